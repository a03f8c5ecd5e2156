#!/usr/bin/env node
// Loads one page in headless Debian Chromium through Gatehouse and prints ONE
// JSON line: {"ok","status","body","error","ms"}. Called by the Rust
// integration tests, which assert on that line, so the exit code is 0
// whenever a result was printed (2 only for unusable input).
//
//   node drive.mjs '{"proxy":"http://proxy.example.test:3128","url":"http://origin.example.test:8080/",
//                    "resolve":{"proxy.example.test":"127.0.0.1","origin.example.test":"127.0.0.1"},
//                    "username":"alice","password":"alice-pw"}'
//   (or the same object on stdin)
//
// Input keys (all but url optional):
//   proxy          --proxy-server, e.g. "http://proxy.example.test:PORT"
//   pac            --proxy-pac-url, e.g. "http://127.0.0.1:PORT/proxy.pac" (fetched directly)
//   username, password
//                  Basic credentials for the PROXY, answered through the
//                  DevTools protocol (Playwright's launch `proxy.username/password`
//                  -> CDP Fetch.authRequired -> Fetch.continueWithAuth). Given
//                  once per request: a second 407 for the same request is
//                  cancelled, so wrong credentials end instead of looping.
//   resolve        {name: ip}: the only names Chromium can resolve (--host-resolver-rules;
//                  everything else is NOT FOUND, so nothing ever reaches the DNS)
//   authAllowlist  --auth-server-allowlist (Negotiate/Kerberos single sign-on)
//   ignoreCertSpki [base64 sha256 of a SubjectPublicKeyInfo]: --ignore-certificate-errors-spki-list
//   timeoutMs      navigation timeout (default 15000)
//   env            extra environment for the browser process (KRB5CCNAME, KRB5_CONFIG)
//   chromium       the browser binary (default /usr/bin/chromium, Debian's)
//   args           extra Chromium flags

import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const BODY_LIMIT = 4096;
const started = Date.now();

function emit(result) {
  process.stdout.write(JSON.stringify({ ...result, ms: Date.now() - started }) + "\n");
}

let input;
try {
  input = JSON.parse(process.argv[2] ?? readFileSync(0, "utf8"));
  if (typeof input?.url !== "string") throw new Error("input has no \"url\"");
} catch (e) {
  emit({ ok: false, status: null, body: "", error: `bad input: ${e.message}` });
  process.exit(2);
}
const timeoutMs = input.timeoutMs ?? 15000;

// Chromium resolves every name through the same rules, the proxy's and the
// PAC host's included. The final catch-all keeps it off the network's DNS
// (this machine has none we may use); the EXCLUDEs keep IP literals usable.
function resolverRules(resolve = {}) {
  const rules = Object.entries(resolve).map(([name, ip]) => `MAP ${name} ${ip}`);
  rules.push("MAP * ~NOTFOUND", "EXCLUDE 127.0.0.1", "EXCLUDE localhost");
  return rules.join(", ");
}

const args = [
  "--disable-gpu",
  "--disable-quic", // QUIC cannot go through an HTTP proxy anyway; keep every request on TCP
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  `--host-resolver-rules=${resolverRules(input.resolve)}`,
];
args.push(...(input.args ?? []));
if (input.pac) args.push(`--proxy-pac-url=${input.pac}`);
if (input.authAllowlist) args.push(`--auth-server-allowlist=${input.authAllowlist}`);
if (input.ignoreCertSpki?.length)
  args.push(`--ignore-certificate-errors-spki-list=${input.ignoreCertSpki.join(",")}`);

// Playwright's proxy option writes --proxy-server and keeps the credentials
// for Fetch.authRequired. Its bypass "<-loopback>" removes Chromium's implicit
// bypass of localhost/127.0.0.1, so even a loopback URL goes through the proxy.
// With a PAC file, the proxy object only carries the credentials (Playwright
// needs a server there; --proxy-pac-url given after it wins in Chromium).
// Chromium's own background requests (component updater, sign-in: seen here
// despite --disable-background-networking) are bypassed: sent "direct", they
// die on the resolver's NOT FOUND instead of adding 407 lines to the proxy's log.
const GOOGLE = [".google.com", ".googleapis.com", ".gstatic.com", ".gvt1.com"];
let proxy;
if (input.proxy) proxy = { server: input.proxy, bypass: ["<-loopback>", ...GOOGLE].join(",") };
if (proxy && input.username != null) {
  proxy.username = input.username;
  proxy.password = input.password ?? "";
}

// A fresh profile per run: no cached auth, cookies or HSTS from a previous run.
const profile = mkdtempSync(join(tmpdir(), "gatehouse-chromium-"));
let context;
const result = { ok: false, status: null, body: "", error: null };
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: input.chromium ?? "/usr/bin/chromium",
    headless: true,
    args,
    proxy,
    env: { ...process.env, ...(input.env ?? {}) },
    timeout: timeoutMs,
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
  // page.goto's message starts with the net error: "page.goto: net::ERR_... at URL"
  const m = /net::ERR_[A-Z_]+/.exec(e.message);
  result.error = m ? m[0] : e.message.split("\n")[0];
} finally {
  await context?.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
emit(result);
