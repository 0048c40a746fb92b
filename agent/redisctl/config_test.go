package redisctl

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/harbormaster/harbormaster/internal/conf"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		field string // "" when valid
		msg   string // substring of the message
	}{
		{"loopback address", Config{Address: "127.0.0.1:6379"}, "", ""},
		{"host name and announce", Config{Address: "localhost:6379", Announce: "redis-1.example.net:6379"}, "", ""},
		{"IPv6 and files", Config{Address: "[::1]:6379", Announce: "[2001:db8::1]:6379", PasswordFile: "/etc/hm/redis.pass", CAFile: "/etc/hm/ca.pem"}, "", ""},
		{"missing address", Config{}, "redis.address", "is missing"},
		{"no port", Config{Address: "127.0.0.1"}, "redis.address", "is not host:port"},
		{"port zero", Config{Address: "127.0.0.1:0"}, "redis.address", "not a number from 1 to 65535"},
		{"port too big", Config{Address: "127.0.0.1:65536"}, "redis.address", "not a number from 1 to 65535"},
		{"named port", Config{Address: "127.0.0.1:redis"}, "redis.address", "not a number from 1 to 65535"},
		{"no host", Config{Address: ":6379"}, "redis.address", "has no host"},
		{"unspecified address", Config{Address: "0.0.0.0:6379"}, "redis.address", "not an address one can connect to"},
		{"bad host name", Config{Address: "redis_1:6379"}, "redis.address", "neither an IP address nor a valid host name"},
		{"announce without port", Config{Address: "127.0.0.1:6379", Announce: "198.18.0.1"}, "redis.announce", "is not host:port"},
		{"announce unspecified", Config{Address: "127.0.0.1:6379", Announce: "[::]:6379"}, "redis.announce", "not an address one can connect to"},
		{"relative password file", Config{Address: "127.0.0.1:6379", PasswordFile: "redis.pass"}, "redis.password_file", "relative path"},
		{"relative CA file", Config{Address: "127.0.0.1:6379", CAFile: "./ca.pem"}, "redis.ca_file", "relative path"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate("redis")
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate: %v, want nil", err)
				}
				return
			}
			var fe *conf.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Validate: %v (%T), want a *conf.FieldError on %s", err, err, tc.field)
			}
			if fe.Field != tc.field || !strings.Contains(fe.Msg, tc.msg) {
				t.Fatalf("Validate: field %q msg %q, want field %q msg containing %q", fe.Field, fe.Msg, tc.field, tc.msg)
			}
			if err.Error() != fe.Field+": "+fe.Msg {
				t.Fatalf("Error() = %q, want field: msg", err.Error())
			}
		})
	}
}

func TestValidateFieldPrefix(t *testing.T) {
	for prefix, want := range map[string]string{"": "address", "redis": "redis.address", "nodes[2].redis": "nodes[2].redis.address"} {
		var fe *conf.FieldError
		cfg := Config{}
		if err := cfg.Validate(prefix); !errors.As(err, &fe) || fe.Field != want {
			t.Errorf("Validate(%q): got %v, want a *conf.FieldError on %s", prefix, err, want)
		}
	}
	var fe *conf.FieldError
	if _, err := New(Config{Address: "nope"}); !errors.As(err, &fe) || fe.Field != "address" {
		t.Errorf("New: got %v, want the *conf.FieldError on address", err)
	}
	if _, err := Remote(Config{Address: "127.0.0.1:6379"}, "127.0.0.1"); !errors.As(err, &fe) || fe.Field != "address" {
		t.Errorf("Remote with a bad announce: got %v, want a *conf.FieldError", err)
	}
}

func TestAnnounce(t *testing.T) {
	c := Config{Address: "127.0.0.1:6379"}
	if got := c.AnnounceAddr(); got != "127.0.0.1:6379" {
		t.Errorf("AnnounceAddr without announce = %q, want the address", got)
	}
	c.Announce = "198.18.0.11:6379"
	if got := c.AnnounceAddr(); got != "198.18.0.11:6379" {
		t.Errorf("AnnounceAddr = %q, want the announce", got)
	}
	for addr, want := range map[string]bool{
		"127.0.0.1:6379": true, "127.1.2.3:6379": true, "[::1]:6379": true, "localhost:6379": true, "LOCALHOST:1": true,
		"198.18.0.11:6379": false, "[2001:db8::1]:6379": false, "redis-1:6379": false,
	} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestReadAuth(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		content string
		want    []string
		err     string
	}{
		{"simple\n", []string{"AUTH", "simple"}, ""},
		{"simple", []string{"AUTH", "simple"}, ""},
		{"hm s3cret pass\r\nsecond line\n", []string{"AUTH", "hm", "s3cret pass"}, ""},
		{" leading-space\n", []string{"AUTH", " leading-space"}, ""},
		{"\nsecond\n", nil, "the first line is empty"},
	}
	for i, tc := range tests {
		p := writeFile(t, dir, "f"+string(rune('a'+i)), tc.content)
		got, err := readAuth(p)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("readAuth(%q): %v, want an error containing %q", tc.content, err, tc.err)
			}
			continue
		}
		if err != nil || strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("readAuth(%q) = %q, %v; want %q", tc.content, got, err, tc.want)
		}
	}
	if _, err := readAuth(dir + "/missing"); err == nil || !strings.Contains(err.Error(), "password_file: "+dir+"/missing does not exist") {
		t.Errorf("readAuth(missing): %v, want a password_file error saying it does not exist", err)
	}
	loose := writeFile(t, dir, "loose", "pw\n")
	if err := os.Chmod(loose, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := readAuth(loose); err == nil || !strings.Contains(err.Error(), "password_file: "+loose+" has mode 0640") || !strings.Contains(err.Error(), "chmod 600 "+loose) {
		t.Errorf("readAuth(mode 0640): %v, want a password_file error naming the mode and chmod 600", err)
	}
}
