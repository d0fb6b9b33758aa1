# figures.awk: the median of a run's figures with their lowest and highest, as make bench and make bench/compare
# print them ("10289 [9252-14115]"). Functions only: the scripts put them before their own program.

# sorted splits the space-separated numbers s into a, sorted, and returns how many.
function sorted(s, a,   n, i, j, t) {
	n = split(s, a, " ")
	for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
	return n
}
function med(s,   a, n) { n = sorted(s, a); if (n == 0) return 0; return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
function rng(s, f,   a, n) { n = sorted(s, a); if (n < 2) return ""; return sprintf(" [" f "-" f "]", a[1], a[n]) }
function fig(s, f) { return sprintf(f, med(s)) rng(s, f) }
