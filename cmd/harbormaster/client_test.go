package main

import (
	"bytes"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
)

// TestProtoJSONNested: nested and repeated messages, every field present in
// field order with its proto name, an empty list as [], 64-bit integers as
// strings, 32-bit ones as numbers, two-space indentation.
func TestProtoJSONNested(t *testing.T) {
	r := &hmv1.MembersResponse{
		Node:     "n1",
		IsLeader: true,
		Members: []*hmv1.Member{{
			Id: "n2", Address: "10.0.0.2:7200", ApiAddress: "10.0.0.2:7201", Voter: true, Alive: true,
			LeaseRemainingMs: -1, Roles: []string{"vip", "redis"}, LeaseGen: 1 << 60,
			Checks: []*hmv1.Check{{Name: "registry", State: "passing", SinceUnixMs: 1767225600000, Output: "200 in 3ms"}},
		}},
	}
	want := `{
  "node": "n1",
  "is_leader": true,
  "members": [
    {
      "id": "n2",
      "address": "10.0.0.2:7200",
      "api_address": "10.0.0.2:7201",
      "voter": true,
      "alive": true,
      "leader": false,
      "witness": false,
      "in_raft": false,
      "lease_remaining_ms": "-1",
      "roles": [
        "vip",
        "redis"
      ],
      "lease_gen": "1152921504606846976",
      "drained": false,
      "checks": [
        {
          "name": "registry",
          "state": "passing",
          "since_unix_ms": "1767225600000",
          "error": "",
          "output": "200 in 3ms"
        }
      ],
      "services": []
    }
  ]
}
`
	checkProtoJSON(t, r, true, want)

	c := &hmv1.Candidacy{Node: "n3", Reasons: []string{"not live"}, Priority: -2, Rank: 1, RolesHeld: 3}
	checkProtoJSON(t, c, true, `{
  "node": "n3",
  "eligible": false,
  "reasons": [
    "not live"
  ],
  "priority": -2,
  "candidate": false,
  "rank": 1,
  "holder": false,
  "held_down": false,
  "avoided_roles_held": [],
  "roles_held": 3
}
`)
}

// TestProtoJSONLine: events --json prints one event per line.
func TestProtoJSONLine(t *testing.T) {
	e := &hmv1.Event{Seq: 12, Index: 40, TimeUnixMs: 1767225600123, Kind: "role", Role: "vip", Old: "n1", New: "n2", Epoch: 3, Message: "a \"quoted\"\nline"}
	checkProtoJSON(t, e, false, `{"seq":"12","index":"40","time_unix_ms":"1767225600123","kind":"role","node":"","actor":"",`+
		`"role":"vip","old":"n1","new":"n2","epoch":"3","message":"a \"quoted\"\nline"}`+"\n")
	checkProtoJSON(t, &hmv1.ApplySpecResponse{}, false, `{"version":"0","index":"0","node":"","dry_run":false,"roles":[],"problems":[],"stopping":[]}`+"\n")
}

// TestProtoJSONMap: a map field, which no admin response has yet, is a JSON
// object. The message is built from a descriptor at run time.
func TestProtoJSONMap(t *testing.T) {
	s := proto.String
	fd := &descriptorpb.FileDescriptorProto{
		Name:    s("maptest.proto"),
		Package: s("maptest"),
		Syntax:  s("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{{
			Name: s("Holders"),
			Field: []*descriptorpb.FieldDescriptorProto{
				{Name: s("node"), JsonName: s("node"), Number: proto.Int32(1), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(), Type: descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum()},
				{Name: s("epoch_by_role"), JsonName: s("epochByRole"), Number: proto.Int32(2), Label: descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum(), Type: descriptorpb.FieldDescriptorProto_TYPE_MESSAGE.Enum(), TypeName: s(".maptest.Holders.EpochByRoleEntry")},
			},
			NestedType: []*descriptorpb.DescriptorProto{{
				Name: s("EpochByRoleEntry"),
				Field: []*descriptorpb.FieldDescriptorProto{
					{Name: s("key"), JsonName: s("key"), Number: proto.Int32(1), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(), Type: descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum()},
					{Name: s("value"), JsonName: s("value"), Number: proto.Int32(2), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(), Type: descriptorpb.FieldDescriptorProto_TYPE_UINT64.Enum()},
				},
				Options: &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)},
			}},
		}},
	}
	file, err := protodesc.NewFile(fd, nil)
	if err != nil {
		t.Fatal(err)
	}
	md := file.Messages().ByName("Holders")
	m := dynamicpb.NewMessage(md)
	m.Set(md.Fields().ByName("node"), protoreflect.ValueOfString("n1"))
	mp := m.Mutable(md.Fields().ByName("epoch_by_role")).Map()
	mp.Set(protoreflect.ValueOfString("vip").MapKey(), protoreflect.ValueOfUint64(7))
	mp.Set(protoreflect.ValueOfString("redis").MapKey(), protoreflect.ValueOfUint64(2))

	checkProtoJSON(t, m, true, `{
  "node": "n1",
  "epoch_by_role": {
    "redis": "2",
    "vip": "7"
  }
}
`)
	checkProtoJSON(t, dynamicpb.NewMessage(md), false, `{"node":"","epoch_by_role":{}}`+"\n")
}

func checkProtoJSON(t *testing.T, m proto.Message, indent bool, want string) {
	t.Helper()
	got, err := protoJSON(m, indent)
	if err != nil {
		t.Fatalf("protoJSON(%T): %v", m, err)
	}
	if string(got) != want {
		t.Errorf("protoJSON(%T, indent %v):\n%s\nwant:\n%s", m, indent, got, want)
	}
	if !indent {
		if n := strings.Count(string(got), "\n"); n != 1 {
			t.Errorf("one-line JSON has %d line ends", n)
		}
		return
	}
	var buf bytes.Buffer
	if err := printProto(&buf, m); err != nil || buf.String() != want {
		t.Errorf("printProto: %v, wrote:\n%s\nwant:\n%s", err, buf.String(), want)
	}
}
