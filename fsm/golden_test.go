// Golden files pin the log and snapshot formats, which outlive any one build:
// agents of different versions read each other's logs and snapshots. A test
// here fails when encoding the same commands or state no longer gives the
// bytes on file. If the change is intended (a new command type, a new
// version), regenerate the files and review the diff:
//
//	go test ./fsm -run Golden -update
//
// A change to an existing command's payload needs a new version byte, not
// just new golden files.
package fsm

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/harbormaster/harbormaster/spec"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

var (
	goldenCommandsFile = filepath.Join("..", "testdata", "golden", "commands-v1.jsonl")
	goldenSnapshotFile = filepath.Join("..", "testdata", "golden", "snapshot-v1.json")
)

// goldenLine is one line of commands-v1.jsonl: the encoded command's header
// bytes and its JSON payload, verbatim.
type goldenLine struct {
	Type    uint8           `json:"type"`
	Version uint8           `json:"version"`
	Payload json.RawMessage `json:"payload"`
}

func writeGolden(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", path)
}

func readGolden(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run `go test ./fsm -run Golden -update` to create it)", err)
	}
	return b
}

// goldenCommandsState is the state after applying sampleCommands to NewState
// at indexes 1..10, written out by hand.
func goldenCommandsState() *State {
	cache := &spec.Spec{Roles: []spec.Role{{Name: "cache", Type: spec.TypeRedisMaster, UnsyncedPromotion: "after 30s"}}}
	return &State{
		Index:       16,
		SpecVersion: 2,
		Spec:        cache,
		Nodes:       map[string]*Node{},
		Checks:      map[string]map[string]CheckResult{},
		Assignments: map[string]*Assignment{"web": {Role: "web", Epoch: 1, Since: t0 + 4, MoveTo: "n2", LostBy: "n1", LostAt: t0 + 4},
			"cache": {Role: "cache", Unsynced: "no replica synced with n1's Redis", UnsyncedSince: t0 + 11}},
		// An event's Seq is its log index; the renewal at 2 made none.
		Events: []Event{
			{Seq: 1, Index: 1, Time: t0, Kind: EventNodeRegistered, Node: "n1", Actor: "n1", New: "raft=10.0.0.1:7000 api=10.0.0.1:7001 voter=true witness=false"},
			{Seq: 3, Index: 3, Time: t0 + 1, Kind: EventSpecApplied, Actor: "operator", Old: "0", New: "1", Message: "roles=[db,web]"},
			{Seq: 4, Index: 4, Time: t0 + 2, Kind: EventRoleAssigned, Node: "n1", Actor: "n1", Role: "web", New: "n1", Epoch: 1, Message: "initial placement"},
			{Seq: 5, Index: 5, Time: t0 + 3, Kind: EventReleaseRequested, Node: "n1", Actor: "n1", Role: "web", Old: "n1", Epoch: 1, Message: "rebalance"},
			{Seq: 6, Index: 6, Time: t0 + 4, Kind: EventRoleReleased, Node: "n1", Actor: "n1", Role: "web", Old: "n1", Epoch: 1, Message: "asked to"},
			{Seq: 7, Index: 7, Time: t0 + 5, Kind: EventNodeLeaving, Node: "n1", Actor: "n1", Message: "shutting down"},
			{Seq: 8, Index: 8, Time: t0 + 6, Kind: EventLeadership, Node: "n1", Actor: "n1", Message: "leadership transferred"},
			{Seq: 9, Index: 9, Time: t0 + 6, Kind: EventNodeDrained, Node: "n1", Actor: "operator", Old: "false", New: "true"},
			{Seq: 10, Index: 10, Time: t0 + 7, Kind: EventCheck, Node: "n1", Actor: "n1", Old: "unknown", New: "passing", Message: "registry-pull passing"},
			{Seq: 11, Index: 11, Time: t0 + 7, Kind: EventRedis, Node: "n1", Actor: "n1", Old: "unknown", New: "master", Message: "offset 4711"},
			{Seq: 12, Index: 12, Time: t0 + 7, Kind: EventNodeRemoved, Node: "n1", Actor: "operator"},
			{Seq: 13, Index: 13, Time: t0 + 8, Kind: EventLeaseKey, Actor: "n1", Old: "0", New: "1", Message: "lease key 1 in use"},
			{Seq: 14, Index: 14, Time: t0 + 9, Kind: EventClusterID, Actor: "n1", New: "0123456789abcdef0123456789abcdef", Message: "cluster id set"},
			{Seq: 15, Index: 15, Time: t0 + 10, Kind: EventSpecApplied, Actor: "operator", Old: "1", New: "2", Message: "roles=[cache]"},
			{Seq: 16, Index: 16, Time: t0 + 11, Kind: EventRedisUnsynced, Actor: "n1", Role: "cache", Message: "no replica synced with n1's Redis"},
		},
		EventSeq:  16,
		LeaseKey:  &LeaseKey{ID: 1, Secret: testLeaseKey(1)},
		ClusterID: "0123456789abcdef0123456789abcdef",
	}
}

// parseGoldenCommands returns the log entries of a commands-v1.jsonl
// file: each line's header bytes followed by its payload.
func parseGoldenCommands(golden []byte) ([][]byte, error) {
	var logData [][]byte
	sc := bufio.NewScanner(bytes.NewReader(golden))
	sc.Buffer(nil, 2*MaxCommandSize)
	for n := 1; sc.Scan(); n++ {
		var gl goldenLine
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&gl); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		logData = append(logData, append([]byte{gl.Type, gl.Version}, gl.Payload...))
	}
	return logData, sc.Err()
}

func TestGoldenCommands(t *testing.T) {
	cmds := sampleCommands()
	var encoded [][]byte
	var want bytes.Buffer
	for _, c := range cmds {
		b := mustEncode(t, c)
		encoded = append(encoded, b)
		line, err := json.Marshal(goldenLine{Type: b[0], Version: b[1], Payload: b[2:]})
		if err != nil {
			t.Fatal(err)
		}
		want.Write(line)
		want.WriteByte('\n')
	}
	if *update {
		writeGolden(t, goldenCommandsFile, want.Bytes())
	}

	// Every golden line is what this build encodes for the same command.
	logData, err := parseGoldenCommands(readGolden(t, goldenCommandsFile))
	if err != nil {
		t.Fatalf("%s: %v", goldenCommandsFile, err)
	}
	if len(logData) != len(encoded) {
		t.Fatalf("%s: got %d commands, want %d (one per sample command); regenerate with -update if a command was added",
			goldenCommandsFile, len(logData), len(encoded))
	}
	for i := range encoded {
		if !bytes.Equal(encoded[i], logData[i]) {
			t.Errorf("%s:%d: the encoding of %T changed:\n got %q\nwant %q\n"+
				"old agents could not read it: bump the command's version, then run `go test ./fsm -run Golden -update`",
				goldenCommandsFile, i+1, cmds[i], encoded[i], logData[i])
		}
	}

	// Every command type is on file.
	onFile := map[CommandType]bool{}
	for _, b := range logData {
		onFile[CommandType(b[0])&^IgnoreUnknownFlag] = true
	}
	for typ := range registry {
		if !onFile[typ] {
			t.Errorf("%s: no %s command; add one to sampleCommands and regenerate", goldenCommandsFile, typ)
		}
	}

	// The golden bytes decode to the same commands and apply, in order, to
	// the expected state.
	f := New()
	for i, b := range logData {
		c, err := Decode(b)
		if err != nil {
			t.Fatalf("%s:%d: Decode: %v", goldenCommandsFile, i+1, err)
		}
		if i < len(cmds) && !reflect.DeepEqual(c, cmds[i]) {
			t.Errorf("%s:%d: decoded\n got %#v\nwant %#v", goldenCommandsFile, i+1, c, cmds[i])
		}
		if res := f.Apply(&raft.Log{Type: raft.LogCommand, Index: uint64(i + 1), Data: b}); res != nil {
			t.Fatalf("%s:%d: Apply: got %v, want nil", goldenCommandsFile, i+1, res)
		}
	}
	got, _ := f.State()
	if want := goldenCommandsState(); !reflect.DeepEqual(got, want) {
		t.Fatalf("state after the golden commands:\n got %s\nwant %s", stateString(t, got), stateString(t, want))
	}
}

// snapshotCommands builds the golden snapshot's state: the sample commands,
// then two nodes back in, both roles placed, and web given back to its
// holder at a new lease generation. The lease key is left out: the golden
// snapshot predates it, and restoring it unchanged shows that snapshots
// without a key still restore (TestSnapshotKeepsLeaseKeys covers the key).
func snapshotCommands() []Command {
	var cmds []Command
	for _, c := range baseSampleCommands() {
		if c.Type() != TypeSetLeaseKey && c.Type() != TypeSetClusterID {
			cmds = append(cmds, c)
		}
	}
	return append(cmds,
		&RegisterNode{Node: "n2", RaftAddr: "10.0.0.2:7000", APIAddr: "10.0.0.2:7001", Voter: true, VIP: true, LeaseTTLMillis: 3000, Time: t0 + 10,
			Services: []string{"db", "web"}},
		&RegisterNode{Node: "w1", RaftAddr: "10.0.0.9:7000", APIAddr: "10.0.0.9:7001", Voter: true, Witness: true, LeaseTTLMillis: 3000, Time: t0 + 11},
		&RenewLease{Node: "n2", Seq: 7},
		&Assign{Role: "web", Node: "n2", HolderGen: 41, Epoch: 2, Reason: "n1 removed", Actor: "n2", Time: t0 + 12},
		&Assign{Role: "db", Node: "n2", HolderGen: 41, Epoch: 1, Reason: "initial placement", Actor: "n2", Time: t0 + 13},
		&RequestRelease{Role: "db", Epoch: 1, Reason: "drain", Actor: "operator", Time: t0 + 14},
		&Assign{Role: "web", Node: "n2", PrevHolder: "n2", HolderGen: 42, Epoch: 3, Reason: "new lease", Actor: "n2", Time: t0 + 15, Detected: t0 + 14},
	)
}

func TestGoldenSnapshot(t *testing.T) {
	st := mustApply(t, NewState(), snapshotCommands()...)
	var want bytes.Buffer
	if err := WriteSnapshot(&want, st); err != nil {
		t.Fatal(err)
	}
	if *update {
		writeGolden(t, goldenSnapshotFile, want.Bytes())
	}

	golden := readGolden(t, goldenSnapshotFile)
	if !bytes.Equal(want.Bytes(), golden) {
		t.Errorf("%s: the snapshot encoding changed:\n got %s\nwant %s\n"+
			"old agents could not restore it: bump SnapshotFormat, then run `go test ./fsm -run Golden -update`",
			goldenSnapshotFile, want.Bytes(), golden)
	}

	// The golden snapshot restores to the state the commands build.
	f := New()
	if err := f.Restore(readCloser{bytes.NewBuffer(golden)}); err != nil {
		t.Fatalf("Restore(%s): %v", goldenSnapshotFile, err)
	}
	got, _ := f.State()
	if !reflect.DeepEqual(got, st) {
		t.Fatalf("restored golden snapshot:\n got %s\nwant %s", stateString(t, got), stateString(t, st))
	}

	// And that state is what it should be, by hand.
	n := len(snapshotCommands())
	// Two renewals (at 2 and 13) made no event; the last event is the
	// last command's, so EventSeq is its index.
	if got.Index != uint64(n) || got.SpecVersion != 1 || got.EventSeq != uint64(n) || len(got.Events) != n-2 {
		t.Errorf("restored: got index %d spec version %d event seq %d (%d events), want %d, 1, %d (%d)",
			got.Index, got.SpecVersion, got.EventSeq, len(got.Events), n, n, n-2)
	}
	for k, e := range got.Events {
		if e.Seq != e.Index || (k > 0 && e.Seq <= got.Events[k-1].Seq) {
			t.Errorf("restored Events[%d]: got seq %d index %d, want seq = index, above the previous seq", k, e.Seq, e.Index)
		}
	}
	if ids := got.NodeIDs(); !reflect.DeepEqual(ids, []string{"n2", "w1"}) {
		t.Errorf("restored nodes: got %v, want [n2 w1]", ids)
	}
	if n2 := got.Nodes["n2"]; n2.LeaseSeq != 7 || n2.Witness || n2.Leaving || !n2.VIP {
		t.Errorf("restored n2: got %+v, want lease seq 7, vip, not witness, not leaving", n2)
	}
	if w1 := got.Nodes["w1"]; !w1.Witness {
		t.Errorf("restored w1: got %+v, want a witness", w1)
	}
	wantAssign := map[string]*Assignment{
		"web": {Role: "web", Holder: "n2", HolderGen: 42, Epoch: 3, Since: t0 + 15, Detected: t0 + 14, LostBy: "n1", LostAt: t0 + 4, GraceMillis: 10_000},
		"db":  {Role: "db", Holder: "n2", HolderGen: 41, Epoch: 1, Since: t0 + 13, Releasing: true, GraceMillis: 10_000},
	}
	if !reflect.DeepEqual(got.Assignments, wantAssign) {
		t.Errorf("restored assignments: got %v, want %v", got.Assignments, wantAssign)
	}

	// Applying more commands to the restored state works as on the original.
	next := &Release{Role: "db", Node: "n2", Epoch: 1, Time: t0 + 16}
	a, errA := Apply(got, got.Index+1, next)
	b, errB := Apply(st, st.Index+1, next)
	if errA != nil || errB != nil || !reflect.DeepEqual(a, b) {
		t.Fatalf("Apply after restore: got (%v, %v), want equal states and no errors", errA, errB)
	}
}

func stateString(t *testing.T, st *State) string {
	t.Helper()
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
