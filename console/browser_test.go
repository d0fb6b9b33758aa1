package console_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/console"
	"github.com/cmdtrack/cmdtrack/internal/testenv"
)

// The console in a real browser: Debian's Chromium, headless, driven over
// the DevTools protocol. Every step waits on a condition in the page
// (chromedp's queries wait for their element), never on time.

// envScreenshots names a directory for the pages' screenshots (`make
// docs/screenshots` sets it to docs/screenshots).
const envScreenshots = "CMDTRACK_SCREENSHOTS"

// browser starts a Chromium of its own for one test and returns a tab's
// context. A JavaScript dialog (alert, confirm, prompt) fails the test: the
// console runs no script, so one can only be an injection that ran.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := testenv.Chromium(t)
	actx, cancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	t.Cleanup(cancel)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(cancelTab)
	// Bound the whole test, so that a wedged browser fails it rather than
	// the package's timeout.
	ctx, cancelTime := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(cancelTime)
	var mu sync.Mutex
	var dialogs []string
	require.NoError(t, chromedp.Listen(ctx, func(ev any) {
		if d, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			mu.Lock()
			dialogs = append(dialogs, d.Message)
			mu.Unlock()
		}
	}))
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		require.Empty(t, dialogs, "a script ran in the console and opened a dialog")
	})
	return ctx
}

// open navigates to u and waits for the element sel, returning the
// response's status.
func open(ctx context.Context, t *testing.T, u, sel string) int64 {
	t.Helper()
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(u))
	require.NoError(t, err, u)
	require.NoError(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(sel))), "%s: %s", u, sel)
	return resp.Status
}

func text(ctx context.Context, t *testing.T, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel)))
	require.NoError(t, err, sel)
	return s
}

func eval[T any](ctx context.Context, t *testing.T, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	require.NoError(t, err, js)
	return v
}

// click follows the link sel and waits for the element want on the page it
// leads to.
func click(ctx context.Context, t *testing.T, sel, want string) {
	t.Helper()
	follow(ctx, t, want, chromedp.Click(chromedp.CSS(sel)))
}

// follow runs steps that load a page (a click, a form's submission), waits
// for it and for the element want on it, and returns the page's status.
func follow(ctx context.Context, t *testing.T, want string, steps ...chromedp.Action[chromedp.Void]) int64 {
	t.Helper()
	resp, err := chromedp.RunResponse(ctx, steps...)
	require.NoError(t, err, "before %s", want)
	require.NoError(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(want))), want)
	return resp.Status
}

// screenshot saves the page as name.png when CMDTRACK_SCREENSHOTS is set.
func screenshot(ctx context.Context, t *testing.T, name string) {
	t.Helper()
	dir := os.Getenv(envScreenshots)
	if dir == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644))
}

// headers sends h with every request of the tab from now on.
func headers(h map[string]string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		if _, err := cdp.Call(ctx, t, network.Enable, network.EnableParams{}); err != nil {
			return err
		}
		hd := network.Headers{}
		for k, v := range h {
			hd[k] = v
		}
		_, err := cdp.Call(ctx, t, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: hd})
		return err
	})
}

// A newcomer's walk: from the overview to the commands that succeeded, to
// meter 4711, to its valve command, whose stages and timeline read in order
// with the right durations.
func TestBrowserWalk(t *testing.T) {
	t.Parallel()
	f := setup(t)
	// The fixture's stuck command has been quiet for 30 minutes.
	srv := f.server(t, console.Config{Addr: console.DefaultAddr, StuckQuiet: 10 * time.Minute})
	ctx := browser(t)

	require.EqualValues(t, http.StatusOK, open(ctx, t, srv.URL+"/", "#window-24h"))
	require.Equal(t, "1", strings.TrimSpace(text(ctx, t, "#stuck-now .big")))
	require.Contains(t, text(ctx, t, "#window-week"), "gas-meter")
	screenshot(ctx, t, "overview")

	click(ctx, t, `#window-24h a.status-count[href="/commands?status=SUCCESSFUL"]`, "table.commands")
	require.Contains(t, eval[string](ctx, t, "location.search"), "status=SUCCESSFUL")
	require.Equal(t, f.valve, text(ctx, t, "table.commands tbody tr:first-child td:nth-child(2)"), "newest first")

	click(ctx, t, `table.commands tbody tr:first-child a[href="/devices/meter-4711"]`, "#device-id")
	require.Equal(t, "meter-4711", text(ctx, t, "#device-id"))
	require.Equal(t, "2", text(ctx, t, "#device-commands"))
	require.Equal(t, "50%", text(ctx, t, "#device-success"))
	screenshot(ctx, t, "device")

	click(ctx, t, `a[href="/commands/`+f.valve+`"]`, "#timeline")
	require.Equal(t, f.valve, text(ctx, t, "#command-id"))
	require.Equal(t, "SUCCESSFUL", text(ctx, t, "#status"))
	require.Equal(t, "queued 1.5 s", text(ctx, t, "#queued-for"))
	require.Equal(t, "delivery took 2.5 s", text(ctx, t, "#delivery-took"))
	require.Equal(t, "the device took 5.0 s", text(ctx, t, "#device-took"))
	require.Equal(t, "Total 9.0 s.", text(ctx, t, "#total"))
	require.Contains(t, text(ctx, t, "#result"), `"valve": "closed"`, "the result pretty-printed")
	sent := text(ctx, t, "#sent")
	require.Contains(t, sent, "CLOSE", "what cmdtrack send recorded")
	require.Contains(t, sent, `"within_s": 30`)
	type event struct {
		Status, Since, Source, Request, Payload string
	}
	events := eval[[]event](ctx, t, `[...document.querySelectorAll('#timeline li.event')].map(li => ({
		Status: li.querySelector('.badge').textContent, Since: li.querySelector('.since').textContent,
		Source: li.querySelector('.source').textContent, Request: li.querySelector('.request-id').textContent,
		Payload: li.querySelector('.payload').textContent}))`)
	require.Len(t, events, 3)
	for i, want := range []struct{ status, since string }{{"SENT", "first"}, {"DELIVERED", "+2.5 s"}, {"SUCCESSFUL", "+5.0 s"}} {
		require.Equal(t, want.status, events[i].Status, "event %d", i)
		require.Equal(t, want.since, events[i].Since, "event %d", i)
		require.Equal(t, "amqp:DefaultQueue", events[i].Source)
		require.Equal(t, "req-"+f.valve+"-"+want.status, events[i].Request)
		require.Contains(t, events[i].Payload, `"status":"`+want.status+`"`)
	}
	screenshot(ctx, t, "command")

	// The rest of the pages, for the README's pictures.
	open(ctx, t, srv.URL+"/outcomes?days=7", "svg.chart")
	screenshot(ctx, t, "outcomes")
	open(ctx, t, srv.URL+"/dead-letters", "table.deadletters")
	screenshot(ctx, t, "dead-letters")
	// The webhooks: from the navigation, an endpoint's failed events, the
	// command to send them again, and the row one is about.
	click(ctx, t, `header.top nav a[href="/webhooks"]`, "table.webhook-endpoints")
	require.Equal(t, "cmdtrack webhooks replay", text(ctx, t, "#replay-command"))
	screenshot(ctx, t, "webhooks")
	click(ctx, t, `table.webhook-endpoints a[href="/webhooks?endpoint=billing"]`, "table.webhooks-failed")
	require.Equal(t, "cmdtrack webhooks replay -endpoint billing", text(ctx, t, "#replay-command"))
	require.Equal(t, 4, eval[int](ctx, t, "document.querySelectorAll('table.webhooks-failed tbody tr').length"))
	click(ctx, t, `table.webhooks-failed a.subject[href="/commands/`+f.valve+`"]`, "#command-id")
	require.Equal(t, f.valve, text(ctx, t, "#command-id"))
	// On a phone: nothing wider than the screen but what scrolls in its box.
	require.NoError(t, chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile)))
	open(ctx, t, srv.URL+"/commands/"+f.valve, "#timeline")
	require.LessOrEqual(t, eval[float64](ctx, t, "document.documentElement.scrollWidth"), 390.0, "the command page fits a phone's width")
	screenshot(ctx, t, "command-phone")
	open(ctx, t, srv.URL+"/", "#window-24h")
	require.LessOrEqual(t, eval[float64](ctx, t, "document.documentElement.scrollWidth"), 390.0, "the overview fits a phone's width")
}

// Filters come from the form into the query string, and pages follow one
// another through the Next link.
func TestBrowserFiltersAndPages(t *testing.T) {
	t.Parallel()
	f := setup(t)
	srv := f.server(t, console.Config{Addr: console.DefaultAddr})
	ctx := browser(t)

	open(ctx, t, srv.URL+"/commands", "form.filters")
	follow(ctx, t, "#next",
		chromedp.SendKeys(chromedp.CSS(`form.filters input[name="device"]`), "meter-0007"),
		chromedp.Click(chromedp.CSS(`form.filters button[type="submit"]`)))
	require.Contains(t, eval[string](ctx, t, "location.search"), "device=meter-0007")
	rows := func() []string {
		return eval[[]string](ctx, t, `[...document.querySelectorAll('table.commands tbody tr td:nth-child(2)')].map(td => td.textContent)`)
	}
	first := rows()
	require.Len(t, first, 50)
	require.Equal(t, "page-000", first[0])
	require.Equal(t, "page-049", first[49])
	click(ctx, t, "#next", "table.commands")
	second := rows()
	require.Len(t, second, 10)
	require.Equal(t, "page-050", second[0])
	require.Equal(t, "End of the list.", text(ctx, t, ".pager"))
	require.Equal(t, "meter-0007", eval[string](ctx, t, `document.querySelector('form.filters input[name="device"]').value`), "the filter stays")

	// Status and product together.
	open(ctx, t, srv.URL+"/commands", "form.filters")
	follow(ctx, t, "table.commands",
		chromedp.SendKeys(chromedp.CSS(`form.filters input[name="product"]`), "gas-meter"),
		chromedp.SetValue(chromedp.CSS(`form.filters select[name="status"]`), "FAILED"),
		chromedp.Click(chromedp.CSS(`form.filters button[type="submit"]`)))
	require.Contains(t, eval[string](ctx, t, "location.search"), "status=FAILED")
	got := rows()
	require.Len(t, got, 6)
	for i, id := range got {
		require.Equal(t, "page-0"+string(rune('0'+i))+"0", id)
	}

	// The search box finds a command by its id.
	open(ctx, t, srv.URL+"/", "#find-command")
	follow(ctx, t, "#command-id",
		chromedp.SendKeys(chromedp.CSS("#find-command"), f.valve),
		chromedp.Click(chromedp.CSS(`form.find button`)))
	require.Equal(t, f.valve, text(ctx, t, "#command-id"))

	// An unknown command is a 404 page.
	require.EqualValues(t, http.StatusNotFound, open(ctx, t, srv.URL+"/commands/no-such-command", "#error"))
	require.Contains(t, text(ctx, t, "#error"), "No command with this id")
}

// signIn answers the browser's sign-in prompts (basic authentication) as a
// person would: with the credentials last set, or by cancelling it when
// there are none, which shows the 401 page.
type signIn struct {
	mu         sync.Mutex
	user, pass string
}

func (s *signIn) set(user, pass string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.user, s.pass = user, pass
}

func (s *signIn) install(ctx context.Context, t *testing.T) {
	t.Helper()
	answer := func(f func(ctx context.Context, t *chromedp.Target) error) {
		// Not in the listener itself, which must not block.
		go func() { _ = chromedp.Do(ctx, chromedp.Func(f)) }()
	}
	require.NoError(t, chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *fetch.EventRequestPaused:
			answer(func(ctx context.Context, t *chromedp.Target) error {
				_, err := cdp.Call(ctx, t, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: ev.RequestID})
				return err
			})
		case *fetch.EventAuthRequired:
			s.mu.Lock()
			resp := &fetch.AuthChallengeResponse{Response: fetch.AuthChallengeResponseResponseCancelAuth}
			if s.user != "" {
				resp = &fetch.AuthChallengeResponse{Response: fetch.AuthChallengeResponseResponseProvideCredentials,
					Username: s.user, Password: s.pass}
			}
			s.mu.Unlock()
			answer(func(ctx context.Context, t *chromedp.Target) error {
				_, err := cdp.Call(ctx, t, fetch.ContinueWithAuth, fetch.ContinueWithAuthParams{RequestID: ev.RequestID, AuthChallengeResponse: resp})
				return err
			})
		}
	}))
	handle := true
	require.NoError(t, chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, fetch.Enable, fetch.EnableParams{HandleAuthRequests: &handle})
		return err
	})))
}

// Without credentials the console answers 401 and shows nothing; with
// them, the pages.
func TestBrowserUnauthorized(t *testing.T) {
	t.Parallel()
	f := setup(t)
	srv := f.server(t, console.Config{Addr: "0.0.0.0:9465", User: "support", Password: "s3cret"})
	ctx := browser(t)
	var login signIn
	login.install(ctx, t)

	require.EqualValues(t, http.StatusUnauthorized, open(ctx, t, srv.URL+"/commands/"+f.valve, "#error"))
	require.Equal(t, "Sign in to see the console.", text(ctx, t, "#error"))
	require.NotContains(t, eval[string](ctx, t, "document.body.textContent"), "meter-4711")

	login.set("support", "s3cret")
	require.EqualValues(t, http.StatusOK, open(ctx, t, srv.URL+"/commands/"+f.valve, "#command-id"))
	require.Equal(t, f.valve, text(ctx, t, "#command-id"))
	// The stylesheet came too (behind the same authentication): its rules
	// apply.
	require.Equal(t, "flex", eval[string](ctx, t, `getComputedStyle(document.querySelector('header.top')).display`))

	// A program's bearer token.
	tok := f.server(t, console.Config{Addr: "0.0.0.0:9465", Token: "tok-1"})
	require.EqualValues(t, http.StatusUnauthorized, open(ctx, t, tok.URL+"/", "#error"))
	require.NoError(t, chromedp.Do(ctx, headers(map[string]string{"Authorization": "Bearer tok-1"})))
	require.EqualValues(t, http.StatusOK, open(ctx, t, tok.URL+"/", "#window-24h"))
}

// A hostile stream: a notification whose result, tags, product and device id
// and a dead letter whose body hold script, markup that breaks out of an
// attribute and javascript: links. In the page nothing of theirs runs or
// becomes markup, and the text shows exactly as sent.
func TestBrowserHostileStream(t *testing.T) {
	t.Parallel()
	f := setup(t)
	srv := f.server(t, console.Config{Addr: console.DefaultAddr})
	ctx := browser(t)

	// Nothing ran, and the data made no element or link of its own: the
	// page's own elements are the only ones.
	inert := func(where string) {
		t.Helper()
		require.Equal(t, "undefined", eval[string](ctx, t, "typeof window.pwned"), "%s: a script of the data ran", where)
		require.Zero(t, eval[int](ctx, t, "document.querySelectorAll('script, img, iframe, object, embed, [onerror], [onclick]').length"),
			"%s: the data made elements", where)
		require.Empty(t, eval[[]string](ctx, t, `[...document.querySelectorAll('a[href]')].map(a => a.protocol).filter(p => p !== 'http:')`),
			"%s: a link that is not http", where)
	}

	open(ctx, t, srv.URL+"/commands/"+f.hostile, "#timeline")
	inert("command")
	// As stored: JSON, whose strings escape their quotes.
	result := text(ctx, t, "#result")
	for _, s := range []string{`<script>window.pwned=\"script\"</script>`, `\"><img src=x onerror=\"window.pwned='img'\">`, hostileLink} {
		require.Contains(t, result, s, "the result as sent")
	}
	tags := text(ctx, t, "#tags")
	require.Contains(t, tags, `"tag_key": "<script>window.pwned=\"script\"</script>"`)
	require.Contains(t, tags, hostileLink)
	require.Equal(t, hostileDevice, text(ctx, t, "#device a"))
	require.Equal(t, "prod"+hostileImg, text(ctx, t, "#product"))
	payload := eval[string](ctx, t, "document.querySelector('.payload').textContent")
	require.Contains(t, payload, `window.pwned=\"script\"`, "the payload byte for byte")
	screenshot(ctx, t, "hostile-command")

	// The device link leads to that very device.
	click(ctx, t, "#device a", "#device-id")
	inert("device")
	require.Equal(t, hostileDevice, text(ctx, t, "#device-id"))

	for _, p := range []string{"/", "/commands", "/outcomes", "/stuck", "/webhooks", "/dead-letters"} {
		open(ctx, t, srv.URL+p, "main h1")
		inert(p)
	}
	require.Contains(t, eval[[]string](ctx, t, `[...document.querySelectorAll('td.preview code')].map(c => c.textContent)`), hostileBody)

	open(ctx, t, srv.URL+"/dead-letters/"+itoa(f.deadID), "#body")
	inert("dead letter")
	require.Equal(t, hostileBody, text(ctx, t, "#body"))
	require.Equal(t, "invalid_json", text(ctx, t, "#class"))
	screenshot(ctx, t, "dead-letter")

	open(ctx, t, srv.URL+"/dead-letters/"+itoa(f.binID), "#body-hex")
	inert("binary dead letter")
	hex := text(ctx, t, "#body-hex")
	require.Contains(t, hex, "ff fe 3c 73 63 72 69 70  74 3e 00 80")
	require.Contains(t, hex, "|..<script>..|")
}

// A support engineer's walk for "did the configuration message reach meter
// 4711, and if not, why?": from the overview's messages to the device's
// downlinks, to the message with its error and timeline; the messages
// list's filters and pages; the message pending too long on the stuck
// page; a synchronous call's page.
func TestBrowserMessages(t *testing.T) {
	t.Parallel()
	f := setup(t)
	srv := f.server(t, console.Config{Addr: console.DefaultAddr, StuckQuiet: 10 * time.Minute})
	ctx := browser(t)

	open(ctx, t, srv.URL+"/", "#window-24h")
	require.Equal(t, "1 messages", strings.TrimSpace(text(ctx, t, "#stuck-messages-now a")))
	require.Contains(t, text(ctx, t, "#window-week table.message-products"), "gas-meter")
	click(ctx, t, `#window-24h .messages a.status-count[href="/messages?status=FAILED"]`, "table.messages")
	require.Contains(t, eval[string](ctx, t, "location.search"), "status=FAILED")

	open(ctx, t, srv.URL+"/devices/meter-4711", "table.downlinks")
	kinds := eval[[]string](ctx, t, `[...document.querySelectorAll('table.downlinks tbody tr td.kind')].map(td => td.textContent)`)
	require.Equal(t, []string{"call", "call", "message", "command", "message", "command"}, kinds, "newest first, together")
	require.Equal(t, "2", text(ctx, t, "#device-messages"))
	screenshot(ctx, t, "device-downlinks")

	click(ctx, t, `table.downlinks a[href="/messages/meter-4711/`+f.msgFailed+`"]`, "#timeline")
	require.Equal(t, f.msgFailed, text(ctx, t, "#message-id"))
	require.Equal(t, "FAILED", text(ctx, t, "#status"))
	require.Equal(t, "IOTDA.014112", text(ctx, t, "#error-code"))
	require.Equal(t, "the device has not subscribed to the topic", text(ctx, t, "#error-msg"))
	require.Equal(t, "held 1 min 0 s", text(ctx, t, "#waited"))
	statuses := eval[[]string](ctx, t, `[...document.querySelectorAll('#timeline li.event .badge')].map(b => b.textContent)`)
	require.Equal(t, []string{"PENDING", "FAILED"}, statuses)
	screenshot(ctx, t, "message")

	// The list: a device's messages over two pages.
	open(ctx, t, srv.URL+"/messages", "form.filters")
	follow(ctx, t, "#next",
		chromedp.SendKeys(chromedp.CSS(`form.filters input[name="device"]`), "meter-0007"),
		chromedp.Click(chromedp.CSS(`form.filters button[type="submit"]`)))
	rows := func() []string {
		return eval[[]string](ctx, t, `[...document.querySelectorAll('table.messages tbody tr td:nth-child(2)')].map(td => td.textContent)`)
	}
	first := rows()
	require.Len(t, first, 50)
	require.Equal(t, "msg-000", first[0])
	screenshot(ctx, t, "messages")
	click(ctx, t, "#next", "table.messages")
	second := rows()
	require.Len(t, second, 10)
	require.Equal(t, "msg-050", second[0])
	require.Equal(t, "meter-0007", eval[string](ctx, t, `document.querySelector('form.filters input[name="device"]').value`), "the filter stays")

	open(ctx, t, srv.URL+"/stuck", "table.stuck-messages")
	require.Equal(t, "1", text(ctx, t, "#stuck-message-count"))
	click(ctx, t, `table.stuck-messages a[href="/messages/meter-4711/`+f.msgStuck+`"]`, "#message-id")
	require.Equal(t, "PENDING", text(ctx, t, "#status"))

	open(ctx, t, srv.URL+"/calls/"+f.callProps, "#call-id")
	require.Equal(t, "IOTDA.014016", text(ctx, t, "#error-code"))
	require.Equal(t, "409", text(ctx, t, "#http-status"))

	open(ctx, t, srv.URL+"/outcomes?days=7", "section.message-product svg.chart")

	// The hostile message: nothing of it runs or becomes markup.
	open(ctx, t, srv.URL+messageURL(hostileMessageDevice, f.msgHostile), "#timeline")
	require.Equal(t, "undefined", eval[string](ctx, t, "typeof window.pwned"))
	require.Zero(t, eval[int](ctx, t, "document.querySelectorAll('script, img, iframe, object, embed, [onerror], [onclick]').length"))
	require.Equal(t, f.msgHostile, text(ctx, t, "#message-id"))
	require.Equal(t, hostileScript, text(ctx, t, "#error-msg"))
	require.Equal(t, hostileScript, text(ctx, t, "#name"))
	click(ctx, t, "#device a", "#device-id")
	require.Equal(t, hostileMessageDevice, text(ctx, t, "#device-id"))
}
