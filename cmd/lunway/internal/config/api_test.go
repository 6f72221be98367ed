package config

import (
	"errors"
	"strings"
	"testing"
)

// TestAPIMetricsLogValidation: the api, metrics and log sections name the
// offending field.
func TestAPIMetricsLogValidation(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(c *Config)
		field string // "" for valid
	}{
		{"defaults", func(c *Config) {}, ""},
		{"socket off", func(c *Config) { c.API.Socket = "off" }, ""},
		{"absolute socket", func(c *Config) { c.API.Socket = "/run/lunway/api.sock" }, ""},
		{"socket too long", func(c *Config) { c.API.Socket = "/" + strings.Repeat("s", 120) }, "api.socket"},
		{"tcp without tls", func(c *Config) { c.API.Listen = "127.0.0.1:9443" }, "api.tls_cert"},
		{"tcp without token", func(c *Config) {
			c.API.Listen, c.API.TLSCert, c.API.TLSKey = "127.0.0.1:9443", "c.pem", "k.pem"
		}, "api.token_file"},
		{"tcp complete", func(c *Config) {
			c.API.Listen, c.API.TLSCert, c.API.TLSKey, c.API.TokenFile = "127.0.0.1:9443", "c.pem", "k.pem", "t"
		}, ""},
		{"tcp bad address", func(c *Config) {
			c.API.Listen, c.API.TLSCert, c.API.TLSKey, c.API.TokenFile = "example.com:9443", "c.pem", "k.pem", "t"
		}, "api.listen"},
		{"metrics bad address", func(c *Config) { c.Metrics.Listen = "9260" }, "metrics.listen"},
		{"metrics", func(c *Config) { c.Metrics.Listen, c.Metrics.Pprof = "127.0.0.1:9260", true }, ""},
		{"log level", func(c *Config) { c.Log.Level = "verbose" }, "log.level"},
		{"log format", func(c *Config) { c.Log.Format = "xml" }, "log.format"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Default("", "/var/lib/lunway")
			c.ApplyDefaults()
			tc.edit(c)
			err := c.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("got %v, want an error on %s", err, tc.field)
			}
		})
	}
}
