package config

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// generatorLayout adds an executable "gen", a non-executable "noexec" and
// a "nodes.ini" to the test layout.
func generatorLayout(t *testing.T) testLayout {
	t.Helper()
	l := newLayout(t)
	for name, mode := range map[string]os.FileMode{"gen": 0o755, "noexec": 0o644, "nodes.ini": 0o644} {
		if err := os.WriteFile(l.path(name), []byte("#!/bin/sh\nexit 1\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

func TestContentKeys(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		check func(t *testing.T, l testLayout, c *Config)
	}{
		{"defaults", minimal, func(t *testing.T, l testLayout, c *Config) {
			eq(t, "ContentGenerator", c.ContentGenerator, "")
			eq(t, "GeneratorForNodes", c.GeneratorForNodes, false)
			eq(t, "GeneratorTimeout", c.GeneratorTimeout, DefaultGeneratorTimeout)
			eq(t, "GeneratorTTL", c.GeneratorTTL, DefaultGeneratorTTL)
			eq(t, "GeneratorConcurrency", c.GeneratorConcurrency, DefaultGeneratorConcurrency)
			eq(t, "Inventory", c.Inventory, "")
		}},
		{"all set", minimal + "content_generator = gen\ngenerator_for_nodes = yes\ngenerator_timeout = 1500ms\ngenerator_ttl = 30\ngenerator_concurrency = 2\ninventory = nodes.ini\n",
			func(t *testing.T, l testLayout, c *Config) {
				eq(t, "ContentGenerator", c.ContentGenerator, l.path("gen"))
				eq(t, "GeneratorForNodes", c.GeneratorForNodes, true)
				eq(t, "GeneratorTimeout", c.GeneratorTimeout, 1500*time.Millisecond)
				eq(t, "GeneratorTTL", c.GeneratorTTL, 30*time.Second)
				eq(t, "GeneratorConcurrency", c.GeneratorConcurrency, 2)
				eq(t, "Inventory", c.Inventory, l.path("nodes.ini"))
			}},
		{"absolute generator, fractional seconds", minimal + "content_generator = @/gen\ngenerator_timeout = 0.25\ngenerator_ttl = 1m\n",
			func(t *testing.T, l testLayout, c *Config) {
				eq(t, "ContentGenerator", c.ContentGenerator, l.path("gen"))
				eq(t, "GeneratorTimeout", c.GeneratorTimeout, 250*time.Millisecond)
				eq(t, "GeneratorTTL", c.GeneratorTTL, time.Minute)
			}},
		{"inventory without a generator", minimal + "inventory: nodes.ini\n", func(t *testing.T, l testLayout, c *Config) {
			eq(t, "Inventory", c.Inventory, l.path("nodes.ini"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := generatorLayout(t)
			c, err := Load(l.write(t, tt.body))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			tt.check(t, l, c)
		})
	}
}

func TestContentKeyErrors(t *testing.T) {
	const gen = minimal + "content_generator = gen\n"
	tests := []struct {
		name string
		body string
		key  string
		want string
	}{
		{"generator missing", minimal + "content_generator = nope\n", "content_generator", "no such file"},
		{"generator not executable", minimal + "content_generator = noexec\n", "content_generator", "not executable"},
		{"generator a directory", minimal + "content_generator = static\n", "content_generator", "not a regular file"},
		{"generator a fifo", minimal + "content_generator = fifo\n", "content_generator", "named pipe"},
		{"for_nodes not a boolean", gen + "generator_for_nodes = sometimes\n", "generator_for_nodes", "not a boolean"},
		{"timeout zero", gen + "generator_timeout = 0\n", "generator_timeout", "not a positive duration"},
		{"timeout negative", gen + "generator_timeout = -5s\n", "generator_timeout", "not a positive duration"},
		{"timeout bad unit", gen + "generator_timeout = 5 seconds\n", "generator_timeout", "not a duration"},
		{"timeout inf", gen + "generator_timeout = inf\n", "generator_timeout", "not a duration"},
		{"timeout hex float", gen + "generator_timeout = 0x1p4\n", "generator_timeout", "not a duration"},
		{"ttl huge", gen + "generator_ttl = 1e300\n", "generator_ttl", "not a duration"},
		{"concurrency zero", gen + "generator_concurrency = 0\n", "generator_concurrency", "from 1 to 1024"},
		{"concurrency huge", gen + "generator_concurrency = 80000\n", "generator_concurrency", "from 1 to 1024"},
		{"concurrency not a number", gen + "generator_concurrency = eight\n", "generator_concurrency", "from 1 to 1024"},
		{"for_nodes without a generator", minimal + "generator_for_nodes = true\n", "generator_for_nodes", "no effect without content_generator"},
		{"timeout without a generator", minimal + "generator_timeout = 2s\n", "generator_timeout", "no effect without content_generator"},
		{"inventory missing", minimal + "inventory = nope.ini\n", "inventory", "no such file"},
		{"inventory a directory", minimal + "inventory = static\n", "inventory", "not a regular file"},
		{"typo", minimal + "content_generater = gen\n", "content_generater", `did you mean "content_generator"?`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := generatorLayout(t)
			path := l.write(t, tt.body)
			_, err := Load(path)
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want *Error", err)
			}
			if ce.Key != tt.key {
				t.Errorf("Key = %q, want %q (%v)", ce.Key, tt.key, err)
			}
			checkPlace(t, ce, path, tt.body)
			if msg := err.Error(); !strings.Contains(msg, tt.want) {
				t.Errorf("message %q: want it to contain %q", msg, tt.want)
			}
		})
	}
}
