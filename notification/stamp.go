package notification

import "time"

// parseStamp is ParseTime's fast path for the two shapes IoTDA writes,
// yyyyMMdd'T'HHmmss'Z' and yyyy-MM-dd'T'HH:mm:ss[.fraction]'Z', read digit
// by digit: time.Parse goes through its layout for each of a message's up
// to five times. ok is false for anything else (an offset, a date that does
// not exist, a year outside minTime..maxTime), which is left to time.Parse;
// when ok, t is what ParseTime returns (FuzzParseStamp holds it to that).
func parseStamp[S string | []byte](s S) (t time.Time, ok bool) {
	var year, month, day, hour, minute, sec, nsec int
	switch {
	case len(s) == len("20060102T150405Z") && s[8] == 'T' && s[15] == 'Z':
		ok = digitsAt(s, 0, 8) && digitsAt(s, 9, 15)
		year, month, day = num(s, 0, 4), num(s, 4, 6), num(s, 6, 8)
		hour, minute, sec = num(s, 9, 11), num(s, 11, 13), num(s, 13, 15)
	case len(s) >= len("2006-01-02T15:04:05Z") && s[len(s)-1] == 'Z' &&
		s[4] == '-' && s[7] == '-' && s[10] == 'T' && s[13] == ':' && s[16] == ':':
		ok = digitsAt(s, 0, 4) && digitsAt(s, 5, 7) && digitsAt(s, 8, 10) &&
			digitsAt(s, 11, 13) && digitsAt(s, 14, 16) && digitsAt(s, 17, 19)
		year, month, day = num(s, 0, 4), num(s, 5, 7), num(s, 8, 10)
		hour, minute, sec = num(s, 11, 13), num(s, 14, 16), num(s, 17, 19)
		if frac := len(s) - 1; frac > 19 {
			// A fraction of any length; as time.Parse, only its first nine
			// digits count.
			ok = ok && s[19] == '.' && frac > 20 && digitsAt(s, 20, frac)
			for i := 20; i < 29; i++ {
				nsec *= 10
				if i < frac {
					nsec += int(s[i] - '0')
				}
			}
		}
	}
	if !ok || month < 1 || month > 12 || day < 1 || day > daysIn(month, year) ||
		hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	// ParseTime keeps microseconds: dropping the finer digits here is its
	// Truncate(time.Microsecond), without the arithmetic on the time.
	t = time.Date(year, time.Month(month), day, hour, minute, sec, nsec-nsec%1000, time.UTC)
	if t.Before(minTime) || !t.Before(maxTime) {
		return time.Time{}, false
	}
	return t, true
}

// digitsAt reports whether s[from:to] is all decimal digits.
func digitsAt[S string | []byte](s S, from, to int) bool {
	for i := from; i < to; i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// num is the number s[from:to] spells, whose digits digitsAt has checked.
func num[S string | []byte](s S, from, to int) int {
	n := 0
	for i := from; i < to; i++ {
		n = n*10 + int(s[i]-'0')
	}
	return n
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}
