package safename

import "testing"

func TestCheck(t *testing.T) {
	for _, tt := range []struct {
		s  string
		ok bool
	}{
		{"debian12", true}, {"a.b_c-d", true}, {"", false}, {".", false}, {"..", false},
		{".staging", false}, {"a/b", false}, {"a b", false}, {string(make([]byte, 65)), false},
	} {
		if err := Check("name", tt.s); (err == nil) != tt.ok {
			t.Errorf("Check(%q) = %v, want ok %v", tt.s, err, tt.ok)
		}
	}
}
