package pq

import "strings"

// SplitOptions splits the "options" startup parameter into words the way
// PostgreSQL's pg_split_opts does: words are separated by runs of unescaped
// ASCII whitespace (space, \t, \n, \v, \f, \r) and a backslash escapes the
// character after it. Unlike pg_split_opts, and like Neon's safekeeper, the
// escapes are left in the words (SK §1.2); use UnescapeOption to remove them.
//
// For example `-c timeline_id=ab tenant_id=cd` gives
// ["-c", "timeline_id=ab", "tenant_id=cd"], and `a\ b c` gives [`a\ b`, "c"].
func SplitOptions(s string) []string {
	var words []string
	start := -1 // start of the current word, -1 between words
	escaped := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isSpace(c) && !escaped {
			if start >= 0 {
				words = append(words, s[start:i])
				start = -1
			}
			continue
		}
		if start < 0 {
			start = i
		}
		escaped = c == '\\' && !escaped
	}
	if start >= 0 {
		words = append(words, s[start:])
	}
	return words
}

// UnescapeOption removes the backslash escapes SplitOptions left in a word:
// `\x` becomes `x`, and a lone trailing backslash is dropped, as
// pg_split_opts does.
func UnescapeOption(word string) string {
	if strings.IndexByte(word, '\\') < 0 {
		return word
	}
	var b strings.Builder
	b.Grow(len(word))
	escaped := false
	for i := 0; i < len(word); i++ {
		c := word[i]
		if c == '\\' && !escaped {
			escaped = true
			continue
		}
		escaped = false
		b.WriteByte(c)
	}
	return b.String()
}

// isSpace is C's isspace in the C locale, which pg_split_opts uses. Bytes of
// multi-byte UTF-8 characters are never spaces, so working on bytes is safe.
func isSpace(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\v', '\f', '\r':
		return true
	}
	return false
}
