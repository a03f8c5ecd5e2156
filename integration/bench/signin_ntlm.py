"""The ntlm_signin row for bench.py (TESTS=ntlm_signin): NTLM handshakes per second
through winbind, Gatehouse against Squid 5.7, same helper count, same run.

Both proxies pass each handshake to Samba's `ntlm_auth --helper-protocol=squid-2.5-ntlmssp`
helpers (N each; Gatehouse `[auth.ntlm] max_helpers = N`, Squid `children N startup=N`),
which ask the lab DC's own winbindd (integration/lab/samba, started here only when nothing
else holds it: it takes the standard ports and /run/samba/winbindd). Squid's helpers run as
`proxy` and reach winbindd's privileged pipe only through the group of the DC's
`state/winbindd_privileged` directory, which is set to `proxy` for the run (Debian's
`winbindd_priv` group, in the lab's own directory). Gatehouse runs as root here, so its
helper command starts ntlm_auth as `proxy` too (setpriv): the same helpers on both sides.
A third column, direct, drives N such helpers with no proxy at all: the ceiling.

The client (`loadgen ntlm`, gss-ntlmssp through MIT GSS-API) makes each handshake on a new
connection, live: GET with a type 1 → 407 with the type 2 → GET with the type 3 and
`Connection: close` → 200, then the proxy closes; users ntlmb000.. in turn. Counted: 200s
only, each checked against nginx's log. Gatehouse's realm is a local users file naming the
same users (domains = ["ADTEST"]): like Squid, it asks no directory for groups.

CPU per handshake: utime + stime from /proc of the proxy and every process under it (its
helpers; for Squid also its worker and log daemon); winbindd and the rest of samba apart
(shared by both, and on 2 cores the likely bound). DC work per handshake: the auth audit
log (`log level = 1 auth_audit:3`, set at run time: smb.conf and `smbcontrol reload-config`): on a DC, winbindd checks the response
itself and logs one `NTLM_AUTH` event per logon (and two `PASSDB` look-ups).

Called by bench.py with itself as `b`.
"""
import glob, os, re, socket, subprocess, sys, time

HELPERS = int(os.environ.get("NTLM_HELPERS", "8"))  # Gatehouse's default max_helpers
USERS = 100
PREFIX = "ntlmb"
DOMAIN = "ADTEST"


def holder():
    """What already holds the one Samba lab per machine, or None."""
    for port in (389, 445):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return f"something listens on 127.0.0.1:{port}"
        except OSError:
            pass
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect("/run/samba/winbindd/pipe")
        return "a winbindd answers on /run/samba/winbindd/pipe"
    except OSError:
        return None
    finally:
        s.close()


def lab(b):
    """The lab DC in the run's directory, its users, and the pipe for Squid's helpers."""
    d = f"{b.work}/samba"
    script = os.path.join(b.ROOT, "integration/lab/samba")
    with open(f"{b.work}/samba-start.out", "w") as out:
        subprocess.run([script, "start", d], check=True, stdout=out, stderr=subprocess.STDOUT)
    b.sh(["/usr/bin/python3", os.path.join(b.ROOT, "integration/bench/samba_users.py"), d, PREFIX, str(USERS)])
    subprocess.run(["chgrp", "proxy", f"{d}/state/winbindd_privileged"], check=True)
    # One NTLM_AUTH line per logon in the audit log, from now on, in logs that are never
    # rotated (at the default 5 MB a rotation would drop counted lines). In the config, not
    # by `smbcontrol debug`: a reload, which winbindd may take late, resets the level.
    conf = f"{d}/etc/smb.conf"
    extra = "        max log size = 0\n        log level = 1 auth_audit:3\n"
    text = open(conf).read().replace("[global]\n", "[global]\n" + extra, 1)
    open(conf, "w").write(text)
    b.sh(["smbcontrol", "-s", conf, "all", "reload-config"])
    return d


def helper(samba):
    """The helper command for Gatehouse and for direct: ntlm_auth run as `proxy`, as Squid
    runs its helpers, so no side's helpers have root's extra reach."""
    return ["setpriv", "--reuid=proxy", "--regid=proxy", "--init-groups",
            "ntlm_auth", "--helper-protocol=squid-2.5-ntlmssp", f"--configfile={samba}/etc/smb.conf"]


def stop(b):
    d = f"{b.work}/samba"
    if os.path.exists(f"{d}/samba.pid"):
        subprocess.run([os.path.join(b.ROOT, "integration/lab/samba"), "stop", d])


def audit(d):
    """(NTLM logons, all auth audit events) in the DC's logs so far."""
    logons = events = 0
    for f in glob.glob(f"{d}/*.log") + glob.glob(f"{d}/log.*"):
        for line in open(f, errors="replace"):
            if "Auth: [" in line:
                events += 1
                logons += ",NTLM_AUTH," in line
    return logons, events


def tree(root):
    """root and every process under it: {pid: comm}."""
    parent, comm = {}, {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            text = open(stat).read()
        except OSError:
            continue
        pid = int(stat.split("/")[2])
        comm[pid] = text[text.index("(") + 1:text.rindex(")")]
        parent[pid] = int(text.rsplit(")", 1)[1].split()[1])
    out, todo = {}, [root]
    while todo:
        p = todo.pop()
        if p in comm and p not in out:
            out[p] = comm[p]
            todo += [c for c, pp in parent.items() if pp == p]
    return out


def cpu(procs):
    """{pid: (comm, CPU seconds so far)} for the processes of a tree()."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid, comm in procs.items():
        try:
            f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            out[pid] = (comm, (int(f[11]) + int(f[12])) / tick)
        except (OSError, IndexError):
            pass
    return out


def spent(before, root, pick=lambda comm: True):
    """CPU seconds spent since `before` (a cpu() of the tree) by the tree's processes that
    `pick` selects, counting one born since from zero."""
    now = cpu(tree(root))
    return sum(c - before.get(p, (None, 0))[1] for p, (comm, c) in now.items() if pick(comm))


def gatehouse(b, samba):
    users = f"{b.work}/ntlm-users.toml"
    b.sh([b.GH, "passwd", "--users", users, "seed"], input="unused-password\n")
    # NTLM never checks this password: every user gets the one hash.
    hashed = re.search(r'password = "([^"]+)"', open(users).read()).group(1)
    open(users, "w").write("".join(f'[users.{PREFIX}{i:03}]\npassword = "{hashed}"\n' for i in range(USERS)))
    open(f"{b.work}/ntlm-local.toml", "w").write(
        f'name = "local"\nkind = "local"\nusers_file = "{users}"\ndomains = ["{DOMAIN}"]\n')
    extra = f"""schemes = ["ntlm"]
[auth.ntlm]
helper = [{", ".join(f'"{a}"' for a in helper(samba))}]
max_helpers = {HELPERS}
max_pending_per_address = {b.CONNS}
"""
    return b.gatehouse("gh_ntlm", b.P["gh_ntlm"], True, realm=f"{b.work}/ntlm-local.toml", extra=extra)


def squid(b, samba):
    # queue-size: every client may wait for a helper (the default, 2 × children, would turn
    # waiting handshakes into errors; Gatehouse lets them wait queue_timeout).
    extra = f"""auth_param ntlm program /usr/bin/ntlm_auth --helper-protocol=squid-2.5-ntlmssp --configfile={samba}/etc/smb.conf
auth_param ntlm children {HELPERS} startup={HELPERS} idle=1 queue-size={b.CONNS}
auth_param ntlm keep_alive on
acl authed proxy_auth REQUIRED
http_access deny !authed
pinger_enable off
"""
    b.squid("sq_ntlm", b.P["sq_ntlm"], 1, False, extra=extra)
    return int(open(f"{b.work}/sq_ntlm/squid.pid").read().strip())


def run_load(b, port, url, seconds, samba=None):
    if port is None:  # direct: the helpers with no proxy
        out = b.loadgen("ntlm-direct", DOMAIN, PREFIX, USERS, HELPERS, seconds, *helper(samba))
    else:
        out = b.loadgen("ntlm", f"127.0.0.1:{port}", url, DOMAIN, PREFIX, USERS, b.CONNS, seconds)
    m = re.search(r"rate ([\d.]+) done (\d+) refused (\d+) busy (\d+) other (\d+) seconds ([\d.]+)", out)
    if not m:
        return None
    return {"rate": float(m.group(1)), "done": int(m.group(2)), "refused": int(m.group(3)),
            "busy": int(m.group(4)), "other": int(m.group(5)), "seconds": float(m.group(6))}


def ntlm_signin(b):
    held = holder()
    if held:
        print(f"# ntlm_signin skipped: the Samba lab is one per machine and {held}", file=sys.stderr)
        return
    samba = lab(b)
    samba_root = int(open(f"{samba}/samba.pid").read().strip())
    # direct: the same helpers driven with no proxy, the ceiling any proxy can reach here.
    proxies = (("direct", None, None), ("gatehouse", b.P["gh_ntlm"], gatehouse(b, samba)),
               ("squid_w1", b.P["sq_ntlm"], squid(b, samba)))
    url = f"http://127.0.0.1:{b.P['origin']}/1k.bin"
    # Warm-up: every helper started, and every user's first logon (several times slower than
    # later ones: 30-60/s cold here) made before anything is measured, so no proxy pays for it.
    for who, port, _ in proxies:
        r = run_load(b, port, url, 8 if port is None else 2, samba)
        print(f"# ntlm_signin warm-up {who}: {r}", file=sys.stderr)
    is_winbindd = lambda comm: comm.startswith("winbindd")
    for rep in range(b.REPS):
        print(f"# ntlm_signin repetition {rep + 1}/{b.REPS}", file=sys.stderr)
        for who, port, root in proxies:
            c0 = cpu(tree(root)) if root else {}
            s0, a0, o0, m0, t0 = cpu(tree(samba_root)), audit(samba), b.origin_count(), b.machine_busy_s(), time.time()
            r = run_load(b, port, url, b.DUR, samba)
            if r is None:
                b.record("ntlm_signin", who, {"rate": 0, "done": 0, "refused": 0, "busy": 0, "other": 1, "cpu_us": 0,
                                              "helper_cpu_us": 0, "winbindd_cpu_us": 0, "samba_cpu_us": 0, "seconds": 0,
                                              "machine_busy": 0, "logons": 0, "audit_events": 0, "arrived": 0,
                                              "helpers": 0})
                continue
            n = max(r["done"], 1)
            a1, procs = audit(samba), tree(root) if root else {}
            r.update(cpu_us=spent(c0, root) * 1e6 / n if root else 0,
                     helper_cpu_us=spent(c0, root, lambda c: c == "ntlm_auth") * 1e6 / n if root else 0,
                     machine_busy=(b.machine_busy_s() - m0) / (time.time() - t0) / os.cpu_count(),
                     winbindd_cpu_us=spent(s0, samba_root, is_winbindd) * 1e6 / n,
                     samba_cpu_us=spent(s0, samba_root, lambda c: not is_winbindd(c)) * 1e6 / n,
                     logons=a1[0] - a0[0], audit_events=a1[1] - a0[1], arrived=b.origin_count() - o0,
                     helpers=sum(1 for c in procs.values() if c == "ntlm_auth") if root else HELPERS)
            if r["refused"] or r["busy"] or r["other"]:
                print(f"# ntlm_signin {who}: {r['refused']} refused, {r['busy']} busy, {r['other']} other failures",
                      file=sys.stderr)
            b.record("ntlm_signin", who, r)


def report(b, lines):
    res = b.results.get("ntlm_signin")
    if not res or "gatehouse" not in res or "squid_w1" not in res:
        return
    lines += ["", f"NTLM handshakes: a new connection each (type 1 → 407 with the type 2 → type 3 → 200, then close), "
              f"{b.CONNS} clients over {USERS} lab users (Samba AD DC, its winbindd); Gatehouse max_helpers = {HELPERS}, "
              f"Squid ntlm_auth children {HELPERS}; both helpers `ntlm_auth --helper-protocol=squid-2.5-ntlmssp`; "
              f"direct: {HELPERS} such helpers driven with no proxy", "",
              "| metric | direct (helpers only) | gatehouse | squid w1 | gatehouse / squid | gatehouse / direct |",
              "|---|---|---|---|---|---|"]
    for rs in res.values():
        for r in rs:
            r["logons_per"] = r["logons"] / max(r["done"], 1)
            r["events_per"] = r["audit_events"] / max(r["done"], 1)
            r["failures"] = r["refused"] + r["busy"] + r["other"]
            r["machine_pct"] = 100 * r.get("machine_busy", 0)
    proxy_only = ("cpu_us", "helper_cpu_us")
    for key, label, fmt in (("rate", "handshakes/s", "{:.0f}"),
                            ("cpu_us", "CPU µs per handshake, proxy + its helpers", "{:.0f}"),
                            ("helper_cpu_us", "of which in ntlm_auth helpers", "{:.0f}"),
                            ("winbindd_cpu_us", "winbindd CPU µs per handshake", "{:.0f}"),
                            ("samba_cpu_us", "rest of samba CPU µs per handshake", "{:.0f}"),
                            ("logons_per", "DC NTLM logons per handshake (auth audit)", "{:.3f}"),
                            ("events_per", "auth audit events per handshake", "{:.2f}"),
                            ("machine_pct", "machine CPU busy, % of both cores", "{:.0f}"),
                            ("failures", "failed handshakes (407 not a challenge + 503 + other)", "{:.0f}")):
        cell = lambda v: f"{fmt.format(v[0])} ({fmt.format(v[1])}–{fmt.format(v[2])})"
        g, q = b.med("ntlm_signin", "gatehouse", key), b.med("ntlm_signin", "squid_w1", key)
        d = b.med("ntlm_signin", "direct", key) if "direct" in res else None
        ratio = lambda x, y: f"{x[0] / y[0]:.2f}×" if y and y[0] and key in ("rate",) + proxy_only else "–"
        lines.append(f"| {label} | {'–' if d is None or key in proxy_only else cell(d)} | {cell(g)} | {cell(q)} | "
                     f"{ratio(g, q)} | {ratio(g, d) if key == 'rate' else '–'} |")
    short = [w for w, rs in res.items() for r in rs if w != "direct" and r["arrived"] < r["done"]]
    lines.append("Origin check (nginx log): " + ("every counted handshake's GET arrived." if not short
                                                 else "short: " + ", ".join(short)))
