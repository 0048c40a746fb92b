package scenario

import (
	"os"
	"strings"
	"testing"
)

// The lab's Redis runs with stock settings plus what docs/redis.md tells
// users to set: every setting of RedisArgv, with its value (the data dir
// aside), is in that section of the docs.
func TestRedisArgvOnlyDocumentedSettings(t *testing.T) {
	b, err := os.ReadFile("../../docs/redis.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i := strings.Index(doc, "### redis.conf")
	if i < 0 {
		t.Fatal(`docs/redis.md has no "### redis.conf" section`)
	}
	section := doc[i:]
	if j := strings.Index(section, "\n## "); j >= 0 {
		section = section[:j]
	}
	argv := RedisArgv("/lab/dir")
	if argv[0] != "redis-server" || len(argv)%2 != 1 {
		t.Fatalf("argv %q: want redis-server then --name value pairs", argv)
	}
	for k := 1; k < len(argv); k += 2 {
		name, val := strings.TrimPrefix(argv[k], "--"), argv[k+1]
		want := name + " " + val
		switch {
		case name == "dir":
			want = "dir "
		case val == "":
			want = name + ` ""`
		}
		if !strings.Contains(section, want) {
			t.Errorf("the lab's redis-server sets %q, which docs/redis.md (redis.conf) does not tell users to set", want)
		}
	}
}
