#!/usr/bin/env node
// Loads one page in headless Debian Chromium through Gatehouse and prints ONE
// JSON line: {"ok":bool,"status":number|null,"body":string,"error":string|null,"ms":number}.
// The Rust integration tests assert on that line, so the exit code is 0
// whenever a line was printed (a crash of node itself exits non-zero).
//
//   node drive.mjs '{"proxy":"http://proxy.example.test:3128",
//                    "url":"http://origin.example.test:8080/",
//                    "resolve":{"proxy.example.test":"127.0.0.1"},
//                    "username":"alice","password":"alice-pw"}'
//   (or the same object on stdin)
//
// Input keys (all but url optional):
//   url            the page to load
//   proxy          --proxy-server, e.g. "http://proxy.example.test:PORT"
//   pac            --proxy-pac-url, e.g. "http://127.0.0.1:PORT/proxy.pac" (fetched directly)
//   username, password
//                  Basic credentials for the PROXY, answered through the
//                  DevTools protocol (Playwright's launch option
//                  proxy.username/password: CDP Fetch.authRequired ->
//                  Fetch.continueWithAuth). Given once per request: a second
//                  407 for the same request is cancelled, so a wrong password
//                  ends instead of looping.
//   resolve        {name: ip}: the only names Chromium can resolve, the proxy's
//                  included (--host-resolver-rules; everything else is NOT
//                  FOUND, so nothing reaches the machine's DNS)
//   authAllowlist  --auth-server-allowlist; with it (or env.KRB5CCNAME) the run
//                  is a Negotiate run: see the Local State below
//   ignoreCertSpki [base64 sha256 of a SubjectPublicKeyInfo]: certificates
//                  Chromium accepts without a trusted CA
//   timeoutMs      launch and navigation timeout each (default 15000)
//   env            extra environment for the browser (KRB5CCNAME, KRB5_CONFIG)
//   chromium       the browser binary (default /usr/bin/chromium, Debian's)
//   args           extra Chromium flags
//
// Result: ok = a response with status 2xx; status = the main document's HTTP
// status (a 407/403 from the proxy for plain HTTP); body = that response's
// text, first 4096 characters; error = the net error ("net::ERR_...") when
// no response came (refused CONNECT, auth cancelled, TLS failure), else the
// first line of the failure ("page.goto: Timeout 15000ms exceeded.").

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const BODY_LIMIT = 4096;
const started = Date.now();
let profile;
// However node exits; Playwright's own exit hook kills the browser.
process.on("exit", () => profile && rmSync(profile, { recursive: true, force: true }));

function finish(result) {
  process.stdout.write(JSON.stringify({ ...result, ms: Date.now() - started }) + "\n");
  process.exit(0);
}

let input;
try {
  input = JSON.parse(process.argv[2] ?? readFileSync(0, "utf8"));
  if (typeof input?.url !== "string") throw new Error('no "url"');
} catch (e) {
  finish({ ok: false, status: null, body: "", error: `bad input: ${e.message}` });
}
const timeoutMs = input.timeoutMs ?? 15000;

// Still one line if Chromium wedges past both timeouts (launch, navigation)
// or the test gives up and kills the driver.
const fail = (error) => () => finish({ ok: false, status: null, body: "", error });
setTimeout(fail("driver watchdog: no result in time"), 2 * timeoutMs + 10000).unref();
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(sig, fail(`driver killed by ${sig}`));

// Chromium resolves every name through these rules, the proxy's and the PAC
// file's proxy name included. The catch-all keeps it off the machine's DNS;
// the EXCLUDEs keep loopback literals (a PAC URL on 127.0.0.1) usable.
function resolverRules(resolve = {}) {
  const rules = Object.entries(resolve).map(([name, ip]) => `MAP ${name} ${ip}`);
  rules.push("MAP * ~NOTFOUND", "EXCLUDE 127.0.0.1", "EXCLUDE localhost");
  return rules.join(", ");
}

// Playwright itself adds --headless, --no-sandbox, --no-first-run,
// --disable-background-networking and --disable-component-update; they are
// repeated here so the list reads whole.
const args = [
  "--disable-gpu",
  "--disable-quic", // QUIC never goes through an HTTP proxy: keep every request on TCP
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  `--host-resolver-rules=${resolverRules(input.resolve)}`,
  ...(input.args ?? []),
];
if (input.pac) args.push(`--proxy-pac-url=${input.pac}`);
if (input.authAllowlist) args.push(`--auth-server-allowlist=${input.authAllowlist}`);
if (input.ignoreCertSpki?.length)
  args.push(`--ignore-certificate-errors-spki-list=${input.ignoreCertSpki.join(",")}`);

// Playwright's proxy option writes --proxy-server and --proxy-bypass-list and
// keeps the credentials for Fetch.authRequired.
// - "<-loopback>" removes Chromium's implicit bypass of localhost/127.0.0.1,
//   so even a loopback URL goes through the proxy.
// - Chromium's own background requests (component updater, Google account
//   lookups: sent despite --disable-background-networking) are bypassed: sent
//   "direct", they die on NOT FOUND instead of putting 407 lines in the
//   proxy's log. (With a PAC file the bypass list does not apply: they reach
//   the proxy, unauthenticated.)
// - With a PAC file and credentials, the object only carries the credentials:
//   Playwright needs a server there, and --proxy-pac-url wins over it.
const GOOGLE = [".google.com", ".googleapis.com", ".gstatic.com", ".gvt1.com"];
let proxy;
if (input.proxy || (input.pac && input.username != null)) {
  proxy = { server: input.proxy ?? "http://unused.invalid:9", bypass: ["<-loopback>", ...GOOGLE].join(",") };
  if (input.username != null) {
    proxy.username = input.username;
    proxy.password = input.password ?? "";
  }
}

// A fresh profile per run: no auth cache, cookies or HSTS from another run.
profile = mkdtempSync(join(tmpdir(), "gatehouse-chromium-"));

// Negotiate needs two browser-wide prefs in the profile's Local State before
// launch (this Chromium has no command-line switch for either):
// - net.received_http_auth_negotiate_headers: Chromium on Linux loads the
//   GSSAPI library only once a Negotiate challenge was seen before; in a fresh
//   profile the first one fails (ERR_UNSUPPORTED_AUTH_SCHEME, falling back to
//   Basic) and merely sets this pref, restarting the network service.
// - auth.disable_negotiate_cname_lookup: the SPN is HTTP/<canonical name>, and
//   a name mapped by --host-resolver-rules canonicalises to its IP: the ticket
//   would be asked for HTTP/127.0.0.1 instead of HTTP/proxy.example.test.
// Only in Negotiate runs: elsewhere GSSAPI stays unloaded, so no ticket the
// machine happens to hold is ever used.
if (input.authAllowlist || input.env?.KRB5CCNAME) {
  const localState = {
    net: { received_http_auth_negotiate_headers: true },
    auth: { disable_negotiate_cname_lookup: true },
  };
  writeFileSync(join(profile, "Local State"), JSON.stringify(localState));
}

const result = { ok: false, status: null, body: "", error: null };
let context;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: input.chromium ?? "/usr/bin/chromium",
    headless: true,
    args,
    proxy,
    env: { ...process.env, ...(input.env ?? {}) }, // Playwright's env replaces, not adds
    timeout: timeoutMs,
    // our handlers above print the line; the browser dies with node
    handleSIGINT: false,
    handleSIGTERM: false,
    handleSIGHUP: false,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const response = await page.goto(input.url, { timeout: timeoutMs, waitUntil: "load" });
  if (response) {
    result.status = response.status();
    result.ok = result.status >= 200 && result.status < 300;
    result.body = (await response.text().catch(() => page.content())).slice(0, BODY_LIMIT);
  } else {
    result.error = "no response";
  }
} catch (e) {
  // "page.goto: net::ERR_TUNNEL_CONNECTION_FAILED at https://...": keep the net error.
  const net = /net::ERR_[A-Z0-9_]+/.exec(e.message);
  result.error = net ? net[0] : e.message.split("\n")[0];
}
await context?.close().catch(() => {});
finish(result);
