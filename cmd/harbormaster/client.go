package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"gopkg.in/yaml.v3"

	"github.com/harbormaster/harbormaster/internal/tlsid"
	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
	"github.com/harbormaster/harbormaster/spec"
)

const defaultAddr = "127.0.0.1:7201"

// defaultConfig is where the CLI looks for the local agent's config to
// find its API address (env HARBORMASTER_CONFIG).
const defaultConfig = "/etc/harbormaster/harbormaster.yaml"

// globals are the flags every client command shares.
type globals struct {
	addr    string
	json    bool
	timeout time.Duration
	tls     tlsid.Files
}

func (g *globals) register(root *cobra.Command) {
	root.PersistentFlags().StringVar(&g.addr, "addr", os.Getenv("HARBORMASTER_ADDR"),
		"agent API addresses, comma-separated, tried in order while unreachable (env HARBORMASTER_ADDR; default: api_addr of the local agent's config, "+
			"HARBORMASTER_CONFIG or "+defaultConfig+", else "+defaultAddr+")")
	root.PersistentFlags().BoolVar(&g.json, "json", false, "print JSON instead of tables")
	root.PersistentFlags().DurationVar(&g.timeout, "timeout", 10*time.Second, "request timeout")
	root.PersistentFlags().StringVar(&g.tls.CA, "ca-file", os.Getenv("HARBORMASTER_CA_FILE"), "cluster CA certificate (env HARBORMASTER_CA_FILE)")
	root.PersistentFlags().StringVar(&g.tls.Cert, "cert-file", os.Getenv("HARBORMASTER_CERT_FILE"), "operator certificate (env HARBORMASTER_CERT_FILE)")
	root.PersistentFlags().StringVar(&g.tls.Key, "key-file", os.Getenv("HARBORMASTER_KEY_FILE"), "operator key (env HARBORMASTER_KEY_FILE)")
}

// dial connects to addr, with mutual TLS when --ca-file, --cert-file and
// --key-file are given (plain text to an insecure agent otherwise); the
// call fails fast (exit 3) if nothing answers.
func (g *globals) dial(addr string) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	switch n := countSet(g.tls.CA, g.tls.Cert, g.tls.Key); n {
	case 0:
		plainText = true
	case 3:
		st, err := tlsid.Load(g.tls, nil)
		if err != nil {
			return nil, usageError{err}
		}
		creds = credentials.NewTLS(st.ClientConfig(tlsid.AnyNode))
	default:
		return nil, usageError{errors.New("--ca-file, --cert-file and --key-file go together: give all three (or the HARBORMASTER_CA_FILE, HARBORMASTER_CERT_FILE and HARBORMASTER_KEY_FILE variables)")}
	}
	return grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
}

func countSet(s ...string) int {
	n := 0
	for _, x := range s {
		if x != "" {
			n++
		}
	}
	return n
}

// addrs are the API addresses to try, in order: --addr (or
// HARBORMASTER_ADDR), else the local agent's api_addr (a wildcard host
// reached on loopback), else defaultAddr.
func (g *globals) addrs() ([]string, error) {
	if g.addr != "" {
		var out []string
		for _, a := range strings.Split(g.addr, ",") {
			if a = strings.TrimSpace(a); a == "" {
				continue
			}
			if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
				return nil, usageError{fmt.Errorf("--addr %q: not host:port (e.g. 10.0.10.11:7201)", a)}
			}
			out = append(out, a)
		}
		if len(out) == 0 {
			return nil, usageError{fmt.Errorf("--addr %q names no address; give host:port[,host:port...]", g.addr)}
		}
		return out, nil
	}
	path, explicit := os.LookupEnv("HARBORMASTER_CONFIG")
	if !explicit {
		path = defaultConfig
	}
	a, err := localAPIAddr(path)
	switch {
	case err == nil:
		return []string{a}, nil
	case explicit || !errors.Is(err, fs.ErrNotExist):
		return nil, usageError{fmt.Errorf("finding the agent's API address in %s: %w; or give --addr", path, err)}
	}
	return []string{defaultAddr}, nil
}

// localAPIAddr reads api_addr from the agent config at path; a wildcard
// host (0.0.0.0, ::) is reached on loopback.
func localAPIAddr(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var c struct {
		APIAddr string `yaml:"api_addr"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		return "", err
	}
	host, port, err := net.SplitHostPort(c.APIAddr)
	if err != nil {
		return "", fmt.Errorf("api_addr %q is not host:port", c.APIAddr)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	return net.JoinHostPort(host, port), nil
}

// clientFor connects to addr.
func (g *globals) clientFor(addr string) (hmv1.AdminClient, func(), error) {
	c, err := g.dial(addr)
	if err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			return nil, nil, err
		}
		return nil, nil, usageError{fmt.Errorf("--addr %q: %w", addr, err)}
	}
	return hmv1.NewAdminClient(c), func() { c.Close() }, nil
}

// client connects to the first address (commands that stream).
func (g *globals) client() (hmv1.AdminClient, func(), error) {
	as, err := g.addrs()
	if err != nil {
		return nil, nil, err
	}
	return g.clientFor(as[0])
}

func (g *globals) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), g.timeout)
}

// call runs fn against the agents at --addr, each with the request
// timeout, in order until one answers: an address that cannot be reached
// (Unavailable, no connection) passes to the next.
func (g *globals) call(fn func(ctx context.Context, c hmv1.AdminClient) error) error {
	as, err := g.addrs()
	if err != nil {
		return err
	}
	for i, a := range as {
		c, closeFn, err := g.clientFor(a)
		if err != nil {
			return err
		}
		ctx, cancel := g.ctx()
		err = fn(ctx, c)
		cancel()
		closeFn()
		if i < len(as)-1 && unreachable(err) {
			fmt.Fprintf(os.Stderr, "%s: %s; trying %s\n", a, errMessage(err), as[i+1])
			continue
		}
		return err
	}
	return nil
}

// unreachable reports whether err says the agent could not be reached
// (no connection), so that another address may be tried.
func unreachable(err error) bool {
	st, ok := status.FromError(err)
	return ok && st.Code() == codes.Unavailable && !handshakeRefused(st.Message()) &&
		(strings.Contains(st.Message(), "connection") || strings.Contains(st.Message(), "dial"))
}

// protoJSON renders a response for --json with protojson: the proto field
// names (snake_case), every field present (an empty list as []), in field
// number order, maps as JSON objects, and 64-bit integers as JSON strings
// (protojson's rule: a JSON number loses precision above 2^53). indent
// selects two-space indentation, else one line; the result ends with a
// newline. protojson varies its spacing on purpose, so the output is
// re-formatted with encoding/json to stay the same from run to run.
func protoJSON(m proto.Message, indent bool) ([]byte, error) {
	b, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if indent {
		err = json.Indent(&out, b, "", "  ")
	} else {
		err = json.Compact(&out, b)
	}
	if err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// printProto writes m as indented JSON (see protoJSON).
func printProto(w io.Writer, m proto.Message) error {
	b, err := protoJSON(m, true)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

func yesno(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func ms(d int64) string {
	if d < 0 {
		return "-"
	}
	return (time.Duration(d) * time.Millisecond).String()
}

func statusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the answering node's view: leader, term, members",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.call(func(ctx context.Context, c hmv1.AdminClient) error {
				r, err := c.Status(ctx, &hmv1.StatusRequest{})
				if err != nil {
					return err
				}
				w := cmd.OutOrStdout()
				if g.json {
					if err := printProto(w, r); err != nil {
						return err
					}
					return noLeader(r)
				}
				t := table(w)
				fmt.Fprintf(t, "Node\t%s (%s)\n", r.Node, r.RaftState)
				if r.Ready {
					fmt.Fprintf(t, "Ready\tyes\n")
				} else {
					fmt.Fprintf(t, "Ready\tno (registering or catching up with the log)\n")
				}
				fmt.Fprintf(t, "Leader\t%s\n", orDash(r.Leader))
				if r.NoQuorum {
					since := time.UnixMilli(r.NoQuorumSinceMs)
					fmt.Fprintf(t, "Quorum\tno quorum since %s (%s): this node holds no role (docs/operations.md, No quorum)\n",
						since.UTC().Format(time.RFC3339), time.Since(since).Round(time.Second))
				} else {
					fmt.Fprintf(t, "Quorum\tyes\n")
				}
				fmt.Fprintf(t, "Term\t%d\n", r.Term)
				if r.LeaseRemainingMs > 0 {
					fmt.Fprintf(t, "Own lease\tgeneration %d, %s left\n", r.LeaseGen, ms(r.LeaseRemainingMs))
				} else {
					fmt.Fprintf(t, "Own lease\tnot held (no majority of voters granted it)\n")
				}
				fmt.Fprintf(t, "Commit/applied\t%d/%d\n", r.CommitIndex, r.AppliedIndex)
				fmt.Fprintf(t, "Last contact\t%s\n", ms(r.LastContactMs))
				fmt.Fprintf(t, "Spec version\t%d\n", r.SpecVersion)
				fmt.Fprintf(t, "Profile\t%s\n", r.Profile)
				if r.TimingWarning != "" {
					fmt.Fprintf(t, "Timing\tWARNING: %s\n", r.TimingWarning)
				}
				fmt.Fprintf(t, "Version\t%s\n", orDash(r.Version))
				if r.Redis != nil {
					fmt.Fprintf(t, "Redis\t%s\n", redisLine(r.Redis))
				}
				t.Flush()
				if r.Redis != nil {
					printRedisWarnings(w, []*hmv1.RedisNode{r.Redis})
				}
				fmt.Fprintln(w)
				printMembers(w, r.Members)
				printChecks(w, r.Members, nil)
				return noLeader(r)
			})
		},
	}
}

// noLeaderError is status's answer when the answering node knows no
// leader: the status was printed, and the exit code says the cluster's
// leader cannot be reached (exitUnavailable).
type noLeaderError struct{ node string }

func (e noLeaderError) Error() string {
	return e.node + " knows no leader: no quorum on its side (a majority of voters unreachable, or an election under way); see docs/operations.md, No quorum"
}

func noLeader(r *hmv1.StatusResponse) error {
	if r.Leader == "" {
		return noLeaderError{node: r.Node}
	}
	return nil
}

func printMembers(w io.Writer, ms []*hmv1.Member) {
	t := table(w)
	fmt.Fprintln(t, "ID\tRAFT ADDRESS\tAPI ADDRESS\tVOTER\tALIVE\tLEADER\tLEASE LEFT\tROLES")
	for _, m := range ms {
		voter := yesno(m.Voter)
		if m.Witness {
			voter = "witness"
		}
		if !m.InRaft {
			voter = "removed"
		}
		if m.Drained {
			voter += " (drained)"
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Id, m.Address, orDash(m.ApiAddress), voter,
			yesno(m.Alive), yesno(m.Leader), msAge(m.LeaseRemainingMs), orDash(strings.Join(m.Roles, ",")))
	}
	t.Flush()
}

// printChecks prints every member's checks (only those named in filter,
// when it is not nil), after a blank line; nothing when there are none.
func printChecks(w io.Writer, ms []*hmv1.Member, filter map[string]bool) {
	var rows []string
	for _, m := range ms {
		for _, c := range m.Checks {
			if filter != nil && !filter[c.Name] {
				continue
			}
			since := "-"
			if c.SinceUnixMs > 0 {
				since = time.UnixMilli(c.SinceUnixMs).Format(time.RFC3339)
			}
			detail := c.Error
			if detail == "" {
				detail = c.Output
			}
			if len(detail) > 100 {
				detail = detail[:97] + "..."
			}
			detail = strings.ReplaceAll(detail, "\n", " ")
			rows = append(rows, fmt.Sprintf("%s\t%s\t%s\t%s\t%s\n", m.Id, c.Name, c.State, since, orDash(detail)))
		}
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintln(w)
	t := table(w)
	fmt.Fprintln(t, "NODE\tCHECK\tSTATE\tSINCE\tLAST ERROR / OUTPUT")
	for _, r := range rows {
		fmt.Fprint(t, r)
	}
	t.Flush()
}

func msAge(v int64) string {
	if v < 0 {
		return "-"
	}
	return ms(v)
}

func membersCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "members",
		Short: "List the cluster members",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.call(func(ctx context.Context, c hmv1.AdminClient) error {
				r, err := c.Members(ctx, &hmv1.MembersRequest{})
				if err != nil {
					return err
				}
				if g.json {
					return printProto(cmd.OutOrStdout(), r)
				}
				printMembers(cmd.OutOrStdout(), r.Members)
				return nil
			})
		},
	}
}

func rolesCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "roles",
		Short: "List the roles, their holders and epochs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.call(func(ctx context.Context, c hmv1.AdminClient) error {
				r, err := c.ListRoles(ctx, &hmv1.ListRolesRequest{})
				if err != nil {
					return err
				}
				if g.json {
					return printProto(cmd.OutOrStdout(), r)
				}
				w := cmd.OutOrStdout()
				t := table(w)
				fmt.Fprintln(t, "ROLE\tTYPE\tHOLDER\tEPOCH\tSINCE\tSTATE\tPOLICY")
				required := map[string]bool{}
				for _, x := range r.Roles {
					state := "held"
					switch {
					case !x.InSpec:
						state = "removed from spec"
					case x.Releasing:
						state = "releasing"
					case x.Holder == "":
						state = "unassigned"
					}
					since := "-"
					if x.SinceUnixMs > 0 {
						since = time.UnixMilli(x.SinceUnixMs).Format(time.RFC3339)
					}
					var policy []string
					if x.Address != "" {
						policy = append(policy, x.Address)
					}
					if len(x.Requires) > 0 {
						policy = append(policy, "requires "+strings.Join(x.Requires, ","))
					}
					if x.Follow != "" {
						policy = append(policy, "follows "+x.Follow)
					}
					if len(x.Avoid) > 0 {
						policy = append(policy, "avoids "+strings.Join(x.Avoid, ","))
					}
					for _, c := range x.Requires {
						required[c] = true
					}
					fmt.Fprintf(t, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", x.Name, orDash(x.Type), orDash(x.Holder), x.Epoch, since, state,
						orDash(strings.Join(policy, "; ")))
				}
				if err := t.Flush(); err != nil {
					return err
				}
				for _, x := range r.Roles {
					if x.Type == "redis-master" {
						printRedis(w, x)
					}
				}
				if len(required) == 0 {
					return nil
				}
				m, err := c.Members(ctx, &hmv1.MembersRequest{})
				if err != nil {
					return err
				}
				printChecks(w, m.Members, required)
				return nil
			})
		},
	}
}

func specCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "spec", Short: "Show or apply the cluster spec"}
	show := &cobra.Command{
		Use:   "show",
		Short: "Print the cluster spec (YAML)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.call(func(ctx context.Context, c hmv1.AdminClient) error {
				r, err := c.GetSpec(ctx, &hmv1.GetSpecRequest{})
				if err != nil {
					return err
				}
				if g.json {
					// The spec itself as JSON, not its YAML in a string.
					sp, err := spec.Parse([]byte(r.Document))
					if err != nil {
						return fmt.Errorf("the agent's spec does not parse: %w", err)
					}
					return printJSON(cmd.OutOrStdout(), map[string]any{"version": r.Version, "spec": sp})
				}
				fmt.Fprintf(cmd.OutOrStdout(), "# spec version %d\n%s", r.Version, r.Document)
				return nil
			})
		},
	}
	var (
		expected      uint64
		dryRun, force bool
	)
	apply := &cobra.Command{
		Use:   "apply FILE",
		Short: "Validate and apply a spec file (use - for standard input)",
		Args:  exactArgs(1, "FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var doc []byte
			var err error
			if args[0] == "-" {
				doc, err = io.ReadAll(cmd.InOrStdin())
			} else {
				doc, err = os.ReadFile(args[0])
			}
			if err != nil {
				return usageError{fmt.Errorf("read spec: %w", err)}
			}
			actor := cliActor()
			return g.call(func(ctx context.Context, c hmv1.AdminClient) error {
				r, err := c.ApplySpec(ctx, &hmv1.ApplySpecRequest{Document: string(doc), ExpectedVersion: expected, Actor: actor,
					DryRun: dryRun, Force: force})
				if err != nil {
					return err
				}
				if g.json {
					return printProto(cmd.OutOrStdout(), r)
				}
				w := cmd.OutOrStdout()
				if dryRun {
					printSpecPreview(w, r)
					return nil
				}
				fmt.Fprintf(w, "spec applied: version %d (log index %d)\n", r.Version, r.Index)
				for _, p := range r.Problems {
					fmt.Fprintf(w, "forced past: %s\n", p)
				}
				if len(r.Stopping) > 0 {
					fmt.Fprintf(w, "stopping (no holder after): %s\n", strings.Join(r.Stopping, ", "))
				}
				return nil
			})
		},
	}
	apply.Flags().Uint64Var(&expected, "expected-version", 0, "apply only if the current spec version is this one")
	apply.Flags().BoolVar(&dryRun, "dry-run", false, "show what would change (roles, fields, holders now and after) on the leader's state; commit nothing")
	apply.Flags().BoolVar(&force, "force", false, "apply a spec refused because a role requires a check no node defines or a held role would lose every eligible node")
	cmd.AddCommand(show, apply)
	return cmd
}

// printSpecPreview prints a dry run of spec apply: per role its change,
// the fields that differ and its holder now and after.
func printSpecPreview(w io.Writer, r *hmv1.ApplySpecResponse) {
	fmt.Fprintf(w, "dry run on %s (spec version %d); nothing applied\n", r.Node, r.Version)
	t := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(t, "ROLE\tCHANGE\tHOLDER NOW\tHOLDER AFTER")
	for _, c := range r.Roles {
		after := orDash(c.HolderAfter)
		if c.Stops {
			after = "- (stops)"
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\n", c.Role, c.Change, orDash(c.HolderNow), after)
	}
	t.Flush()
	for _, c := range r.Roles {
		for _, f := range c.Fields {
			fmt.Fprintf(w, "  %s.%s\n", c.Role, f)
		}
		if c.HolderAfter == "" && c.Why != "" {
			fmt.Fprintf(w, "  %s: no holder after: %s\n", c.Role, c.Why)
		}
	}
	for _, p := range r.Problems {
		fmt.Fprintf(w, "refused without --force: %s\n", p)
	}
}

func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError{fmt.Errorf("%s takes %s; see %s --help", cmd.CommandPath(), names, cmd.CommandPath())}
		}
		return nil
	}
}

func joinCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "join ADDR",
		Short: "Add the node at --addr to the cluster that the member at ADDR (an API address) belongs to",
		Args:  exactArgs(1, "ADDR, the API address of an existing member"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var self *hmv1.StatusResponse
			if err := g.call(func(ctx context.Context, c hmv1.AdminClient) (err error) {
				self, err = c.Status(ctx, &hmv1.StatusRequest{})
				return err
			}); err != nil {
				return err
			}
			conn, err := g.dial(args[0])
			if err != nil {
				return usageError{fmt.Errorf("ADDR %q: %w", args[0], err)}
			}
			defer conn.Close()
			ctx, cancel := g.ctx()
			defer cancel()
			r, err := hmv1.NewAdminClient(conn).Join(ctx, &hmv1.JoinRequest{Id: self.Node, RaftAddress: self.RaftAddress,
				ApiAddress: self.ApiAddress, Voter: self.Voter})
			if err != nil {
				return err
			}
			if g.json {
				return printProto(cmd.OutOrStdout(), r)
			}
			if r.Already {
				fmt.Fprintf(cmd.OutOrStdout(), "%s is already a member\n", self.Node)
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "%s joined via %s (log index %d)\n", self.Node, args[0], r.Index)
			}
			return nil
		},
	}
}

func removeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "remove NODE",
		Short: "Remove a node from the cluster",
		Args:  exactArgs(1, "NODE, a node id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.call(func(ctx context.Context, c hmv1.AdminClient) error {
				r, err := c.Remove(ctx, &hmv1.RemoveRequest{Id: args[0]})
				if err != nil {
					return err
				}
				if g.json {
					return printProto(cmd.OutOrStdout(), r)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s removed (log index %d)\n", args[0], r.Index)
				return nil
			})
		},
	}
}

func transferLeaderCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "transfer-leader [NODE]",
		Short: "Move Raft leadership to NODE (or to the most up-to-date voter)",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageError{fmt.Errorf("transfer-leader takes at most one NODE")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			target := ""
			if len(args) == 1 {
				target = args[0]
			}
			return g.call(func(ctx context.Context, c hmv1.AdminClient) error {
				r, err := c.TransferLeadership(ctx, &hmv1.TransferLeadershipRequest{Target: target})
				if err != nil {
					return err
				}
				if g.json {
					return printProto(cmd.OutOrStdout(), r)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "leadership: %s -> %s\n", r.OldLeader, orDash(r.NewLeader))
				return nil
			})
		},
	}
}

func eventsCmd(g *globals) *cobra.Command {
	var follow bool
	var since uint64
	cmd := &cobra.Command{
		Use:   "events [--follow]",
		Short: "Print the event log (role changes, membership, operator actions)",
		Long: `Print the event log (role changes, membership, operator actions). With --follow, keep printing new
events; when the agent goes away (a restart, a network cut) reconnect, to the next --addr address when
there are several, and go on after the last event printed, until interrupted.`,
		Example: "  harbormaster events --since 120\n  harbormaster events --follow --addr 10.0.10.11:7201,10.0.10.12:7201",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			as, err := g.addrs()
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			last := since
			emit := func(e *hmv1.Event) error {
				last = e.Seq
				if g.json {
					b, err := protoJSON(e, false)
					if err != nil {
						return err
					}
					_, err = w.Write(b)
					return err
				}
				_, err := fmt.Fprintln(w, formatEvent(e))
				return err
			}
			if !follow {
				return watchEvents(cmd.Context(), g, as[0], last, false, g.timeout, emit)
			}
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			for i := 0; ; i++ {
				addr := as[i%len(as)]
				err := watchEvents(ctx, g, addr, last, true, 0, emit)
				var ue usageError
				switch {
				case ctx.Err() != nil:
					return nil
				case errors.As(err, &ue), err != nil && !unreachable(err) && status.Code(err) != codes.Unavailable:
					return err
				}
				fmt.Fprintf(os.Stderr, "events: %s went away (%s); reconnecting after #%d\n", addr, errMessage(err), last)
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(followRetry):
				}
			}
		},
	}
	cmd.Flags().BoolVar(&follow, "follow", false, "keep printing new events, reconnecting when the agent goes away")
	cmd.Flags().Uint64Var(&since, "since", 0, "only events after this sequence number")
	return cmd
}

// followRetry is how long events --follow waits before reconnecting.
const followRetry = 500 * time.Millisecond

// watchEvents streams the events after since from addr to print; timeout
// bounds the whole call when positive. A stream that ends without an
// error while following (the agent stopping) is reported as Unavailable.
func watchEvents(ctx context.Context, g *globals, addr string, since uint64, follow bool, timeout time.Duration,
	emit func(*hmv1.Event) error) error {
	if ctx == nil {
		ctx = context.Background()
	}
	c, closeFn, err := g.clientFor(addr)
	if err != nil {
		return err
	}
	defer closeFn()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	stream, err := c.WatchEvents(ctx, &hmv1.WatchEventsRequest{Since: since, Follow: follow})
	if err != nil {
		return err
	}
	for {
		e, err := stream.Recv()
		if err == io.EOF {
			if follow {
				return status.Error(codes.Unavailable, "the stream ended")
			}
			return nil
		}
		if err != nil {
			return err
		}
		if err := emit(e); err != nil {
			return err
		}
	}
}

func formatEvent(e *hmv1.Event) string {
	var b strings.Builder
	b.WriteString(time.UnixMilli(e.TimeUnixMs).UTC().Format("2006-01-02T15:04:05.000Z"))
	b.WriteString("  #" + strconv.FormatUint(e.Seq, 10) + "  " + e.Kind)
	if e.Role != "" {
		b.WriteString("  role=" + e.Role)
	}
	if e.Node != "" {
		b.WriteString("  node=" + e.Node)
	}
	if e.Old != "" || e.New != "" {
		fmt.Fprintf(&b, "  %s -> %s", orDash(e.Old), orDash(e.New))
	}
	if e.Epoch != 0 {
		fmt.Fprintf(&b, "  epoch=%d", e.Epoch)
	}
	if e.Message != "" {
		b.WriteString("  (" + e.Message + ")")
	}
	if e.Actor != "" {
		b.WriteString("  by " + e.Actor)
	}
	return b.String()
}

func explainCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "explain ROLE",
		Short: "Show, per node, why it is or is not the chosen holder of a role (a dry run of the placement)",
		Args:  exactArgs(1, "ROLE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.call(func(ctx context.Context, c hmv1.AdminClient) error {
				r, err := c.Explain(ctx, &hmv1.ExplainRequest{Role: args[0]})
				if err != nil {
					return err
				}
				w := cmd.OutOrStdout()
				if g.json {
					return printProto(w, r)
				}
				holder := orDash(r.Holder)
				if r.Holder != "" {
					holder += fmt.Sprintf(" (epoch %d)", r.Epoch)
				}
				fmt.Fprintf(w, "Role %s (%s), holder %s, seen from %s\n", r.Role, r.Type, holder, r.Node)
				fmt.Fprintf(w, "Decision: %s\n", r.Decision)
				if r.Chosen != "" {
					fmt.Fprintf(w, "Placement ranks first: %s\n", r.Chosen)
				}
				fmt.Fprintln(w)
				t := table(w)
				fmt.Fprintln(t, "NODE\tRANK\tCANDIDATE\tPRIORITY\tROLES HELD\tWHY NOT / NOTES")
				for _, n := range r.Nodes {
					rank := "-"
					if n.Rank > 0 {
						rank = fmt.Sprint(n.Rank)
					}
					if n.Holder {
						rank += " (holder)"
					}
					fmt.Fprintf(t, "%s\t%s\t%s\t%d\t%d\t%s\n", n.Node, rank, yesno(n.Candidate), n.Priority, n.RolesHeld,
						orDash(strings.Join(n.Reasons, "; ")))
				}
				if err := t.Flush(); err != nil || r.Type != "redis-master" {
					return err
				}
				// A redis-master role: the replication state behind the
				// ranking (history, sync, lag, warnings).
				rs, err := c.ListRoles(ctx, &hmv1.ListRolesRequest{})
				if err != nil {
					return err
				}
				for _, x := range rs.Roles {
					if x.Name == r.Role {
						printRedis(w, x)
					}
				}
				return nil
			})
		},
	}
}
