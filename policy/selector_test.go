package policy

import (
	"strings"
	"testing"
)

func TestSelector(t *testing.T) {
	labels := map[string]string{"zone": "home", "kubernetes.io/hostname": "old", "gpu": "nvidia"}
	for _, tc := range []struct {
		sel  string
		want bool
	}{
		{"", true},
		{"all()", true},
		{"has(gpu)", true},
		{"has(ssd)", false},
		{"!has(ssd)", true},
		{"zone == 'home'", true},
		{`zone == "home"`, true},
		{"zone == 'aws'", false},
		{"zone != 'aws'", true},
		{"ssd != 'yes'", true}, // a missing label is "not equal"
		{"zone in {'aws', 'home'}", true},
		{"zone in {'aws'}", false},
		{"zone in {}", false},
		{"zone not in {'aws'}", true},
		{"ssd not in {'yes'}", true},
		{"zone == 'home' && has(gpu)", true},
		{"zone == 'home' && has(ssd)", false},
		{"zone == 'aws' || kubernetes.io/hostname == 'old'", true},
		{"!(zone == 'aws' || has(ssd))", true},
		{"zone == 'aws' || zone == 'home' && has(ssd)", false}, // && binds tighter
		{"(zone == 'aws' || zone == 'home') && has(gpu)", true},
		{"  all()  &&  has(gpu) ", true},
	} {
		s, err := ParseSelector(tc.sel)
		if err != nil {
			t.Errorf("ParseSelector(%q): %v", tc.sel, err)
			continue
		}
		if got := s.Matches(labels); got != tc.want {
			t.Errorf("%q.Matches = %v, want %v", tc.sel, got, tc.want)
		}
	}
}

func TestSelectorErrors(t *testing.T) {
	for sel, want := range map[string]string{
		"has(zone":                         "column 9: missing ')'",
		"zone = 'home'":                    "column 6: expected ==, !=, in or not in",
		"zone == home":                     "column 9: expected a quoted string",
		"zone == 'home":                    "unterminated string",
		"zone in 'a'":                      "expected '{'",
		"zone in {'a' 'b'}":                "expected ',' or '}'",
		"(all()":                           "missing ')'",
		"all() &&":                         "unexpected end",
		"all() extra":                      `unexpected "extra"`,
		"&& all()":                         `unexpected "&"`,
		strings.Repeat("!", 100) + "all()": "nested too deeply",
	} {
		_, err := ParseSelector(sel)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseSelector(%q) = %v, want an error containing %q", sel, err, want)
		}
	}
}
