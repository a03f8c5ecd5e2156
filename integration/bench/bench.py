"""Gatehouse vs Squid on one machine, same run, alternating, as ratios.

Everything listens on 127.0.0.1 below port 32768. Each figure is the median
of REPS runs (spread = min..max); ratios are taken against Squid and against
going direct, both measured in the same run.
"""
import base64, json, os, re, shutil, signal, statistics, subprocess, sys, tempfile, time

import signin  # the sign-in rows (this directory is on sys.path when run as a script)
import signin_ntlm

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
# BENCH_GATEHOUSE_BIN runs another build (a baseline commit, say) in the same harness
# (not GATEHOUSE_*: Gatehouse reads that prefix as config and refuses unknown keys).
GH = os.environ.get("BENCH_GATEHOUSE_BIN") or os.path.join(ROOT, "target/release/gatehouse")
LOADGEN = os.path.join(ROOT, "integration/bench/loadgen/target/release/gatehouse-loadgen")
REPS = int(os.environ.get("REPS", "3"))
DUR = int(os.environ.get("DURATION", "10"))
CONNS = 64
# TESTS=connect_rate,bulk (comma-separated) runs only those; empty runs all.
ONLY = {t for t in os.environ.get("TESTS", "").split(",") if t}


def want(test):
    return not ONLY or test in ONLY or any(test.startswith(t) for t in ONLY)
P = dict(ldap=21389, gh_ldap=21134, sq_ldap=21135, origin=21080, echo=21090, pong=21091, tls=21092, tls12=21093, https=21094, gh_intercept=21136, sq_bump=21137, gh_detect=21133, gh=21130, gh_auth=21131, sq1=21128, sq2=21129, sq_auth=21132,
         gh_pol_none=21140, gh_pol_domains=21141, gh_pol_cidrs=21142, gh_pol_rules=21143,
         sq_pol_none=21144, sq_pol_domains=21145, sq_pol_cidrs=21146,
         ws_origin=21147, gh_ws=21148, sq_ws=21149,
         kdc=21152, gh_neg=21153, sq_neg=21154, gh_ntlm=21155, sq_ntlm=21156)  # h2.py holds 21095, 21138, 21139, 21150, 21151
USER, PASSWORD = "bench", "bench-password"
work = tempfile.mkdtemp(prefix="gatehouse-bench-")
procs = []


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def start(cmd, name, **kw):
    out = open(os.path.join(work, name + ".out"), "w")
    p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kw)
    procs.append(p)
    return p


def assert_free(port):
    """A leftover server on our port would be measured instead of ours: refuse to start."""
    import socket
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers are fine
    try:
        s.bind(("127.0.0.1", port))
        s.listen()
    except OSError as e:
        raise SystemExit(f"port {port} is in use ({e}): stop what holds it (a previous bench run?)")
    finally:
        s.close()


def wait_port(port, secs=20):
    import socket
    end = time.time() + secs
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port} after {secs}s")


def cleanup():
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    squids = []
    for pidfile in ("sq1", "sq2", "sq_auth", "sq_ldap", "sq_pol_none", "sq_pol_domains", "sq_pol_cidrs", "sq_bump", "sq_ws", "sq_neg", "sq_ntlm"):
        f = os.path.join(work, pidfile, "squid.pid")
        if os.path.exists(f):
            try:
                pid = int(open(f).read().strip())
                os.kill(pid, signal.SIGTERM)
                squids.append(pid)
            except (ProcessLookupError, ValueError):
                pass
    # Squid takes its shutdown_lifetime to go: wait, so a next run finds its ports free.
    end = time.time() + 15
    while squids and time.time() < end:
        squids = [p for p in squids if os.path.exists(f"/proc/{p}")]
        time.sleep(0.1)
    shutil.rmtree(f"{work}/policy", ignore_errors=True)  # the generated lists: ~25 MB
    signin_ntlm.stop(sys.modules[__name__])
    if os.path.exists(f"{work}/slapd/run.pid"):
        subprocess.run([os.path.join(ROOT, "integration/lab/slapd"), "stop", f"{work}/slapd"])
    time.sleep(1)


def nginx():
    os.makedirs(f"{work}/www", exist_ok=True)
    open(f"{work}/www/1k.bin", "wb").write(b"x" * 1024)
    conf = f"""worker_processes 1; daemon off; pid {work}/nginx.pid; error_log {work}/nginx.err;
events {{ worker_connections 20000; }}
http {{ access_log {work}/nginx.log; keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{P['origin']}; root {work}/www; }} }}"""
    open(f"{work}/nginx.conf", "w").write(conf)
    start(["nginx", "-c", f"{work}/nginx.conf"], "nginx")
    wait_port(P["origin"])


LDAP_USERS = 1000
LDAP_SUFFIX = "dc=example,dc=test"


def ldap_lab():
    """The lab slapd (integration/lab/slapd) with 2 × LDAP_USERS users u0000.. (password
    pw-<n>), all in group bench-staff, which is nested in bench-all: one set of users per proxy,
    so each proxy's first pass is cold."""
    lab = os.path.join(ROOT, "integration/lab/slapd")
    # slapd stays in the background holding its stdout: not a pipe we would wait on.
    with open(f"{work}/slapd-start.out", "w") as out:
        subprocess.run([lab, "start", f"{work}/slapd", str(P["ldap"])], check=True, stdout=out, stderr=subprocess.STDOUT)
    n = 2 * LDAP_USERS
    ldif = []
    for i in range(n):
        ldif.append(f"dn: uid=u{i:04},ou=people,{LDAP_SUFFIX}\nobjectClass: inetOrgPerson\nuid: u{i:04}\ncn: U {i}\nsn: U\nuserPassword: pw-{i:04}\n")
    members = "".join(f"member: uid=u{i:04},ou=people,{LDAP_SUFFIX}\n" for i in range(n))
    ldif.append(f"dn: cn=bench-staff,ou=groups,{LDAP_SUFFIX}\nobjectClass: groupOfNames\ncn: bench-staff\n{members}")
    ldif.append(f"dn: cn=bench-all,ou=groups,{LDAP_SUFFIX}\nobjectClass: groupOfNames\ncn: bench-all\nmember: cn=bench-staff,ou=groups,{LDAP_SUFFIX}\n")
    open(f"{work}/bench-users.ldif", "w").write("\n".join(ldif))
    sh(["ldapadd", "-x", "-H", f"ldap://127.0.0.1:{P['ldap']}", "-D", f"cn=admin,{LDAP_SUFFIX}",
        "-y", f"{work}/slapd/admin.pw", "-f", f"{work}/bench-users.ldif"])
    realm = f"""name = "bench-ldap"
kind = "ldap"
urls = ["ldap://127.0.0.1:{P['ldap']}"]
tls = "none"
bind_dn = "cn=gatehouse,ou=services,{LDAP_SUFFIX}"
bind_password_file = "{work}/slapd/bind.pw"
user_base = "ou=people,{LDAP_SUFFIX}"
user_filter = "(&(objectClass=inetOrgPerson)(uid={{user}}))"
login_attribute = "uid"
group_base = "ou=groups,{LDAP_SUFFIX}"
group_strategy = "memberof"
"""
    open(f"{work}/ldap-realm.toml", "w").write(realm)


def ldap_ops():
    """Searches and binds slapd has logged so far (its stats log)."""
    srch = bind = 0
    for line in open(f"{work}/slapd/slapd.log", errors="replace"):
        if " SRCH base=" in line:
            srch += 1
        elif " BIND dn=" in line and "method=128" in line:  # slapd logs a second BIND line (mech=) per bind
            bind += 1
    return srch, bind


def origin_count():
    return sum(1 for _ in open(f"{work}/nginx.log"))


def squid(name, port, workers, auth, ldap=False, extra="", wait=20, env=None):
    d = f"{work}/{name}"
    os.makedirs(d, exist_ok=True)
    shutil.chown(d, "proxy", "proxy")
    auth_conf = ""
    if ldap:
        shutil.copy(f"{work}/slapd/bind.pw", f"{d}/bind.pw")
        shutil.chown(f"{d}/bind.pw", "proxy", "proxy")
        auth_conf = f"""auth_param basic program /usr/lib/squid/basic_ldap_auth -b ou=people,{LDAP_SUFFIX} -f uid=%s -D cn=gatehouse,ou=services,{LDAP_SUFFIX} -W {d}/bind.pw -h 127.0.0.1 -p {P['ldap']}
auth_param basic children 4
auth_param basic credentialsttl 5 minutes
acl authed proxy_auth REQUIRED
http_access deny !authed
"""
    elif auth:
        auth_conf = f"""auth_param basic program /usr/lib/squid/basic_ncsa_auth {work}/htpasswd
auth_param basic children 4
auth_param basic credentialsttl 5 minutes
acl authed proxy_auth REQUIRED
http_access deny !authed
"""
    conf = f"""http_port 127.0.0.1:{port}
workers {workers}
pid_filename {d}/squid.pid
cache_log {d}/cache.log
access_log daemon:{d}/access.log squid
coredump_dir {d}
cache deny all
cache_mem 8 MB
max_filedescriptors 20000
acl localnet src 127.0.0.0/8
acl bench_ports port {P['echo']} {P['pong']} {P['origin']} {P['tls']} {P['tls12']}
acl CONNECT method CONNECT
http_access deny CONNECT !bench_ports
{auth_conf}{extra}http_access allow localnet
http_access deny all
forwarded_for delete
via on
shutdown_lifetime 1 seconds
"""
    open(f"{d}/squid.conf", "w").write(conf)
    subprocess.run(["squid", "-f", f"{d}/squid.conf"], check=True, env=env)
    wait_port(port, wait)


def squid_pids(name):
    out = subprocess.run(["pgrep", "-f", f"{work}/{name}/squid.conf"], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def gatehouse(name, port, auth, detect=False, realm=None, extra="", wait=20, env=None):
    users = f"{work}/users.toml"
    if not os.path.exists(users):
        subprocess.run([GH, "passwd", "--users", users, USER], input=PASSWORD + "\n", text=True, check=True, capture_output=True)
        open(f"{work}/local.toml", "w").write(f'name = "local"\nkind = "local"\nusers_file = "{users}"\n')
    realm = realm or f"{work}/local.toml"
    auth_conf = f'[auth]\nrequired = {"true" if auth else "false"}\nrealms = ["{realm}"]\n'
    conf = f"""[listener]
addresses = ["127.0.0.1:{port}"]
max_connections = 19000
# all load comes from one address here
max_connections_per_address = 19000
[tunnel]
allowed_ports = [{P['echo']}, {P['pong']}, {P['tls']}, {P['tls12']}]
[detection]
enabled = {"true" if detect else "false"}
ca_file = "{work}/bench-ca.pem"
[accesslog]
path = "{work}/{name}.access.log"
[log]
level = "warn"
{auth_conf}{extra}"""
    open(f"{work}/{name}.toml", "w").write(conf)
    p = start([GH, "run", "--config", f"{work}/{name}.toml"], name, env=env)
    wait_port(port, wait)
    return p.pid


def cpu_seconds(pids):
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += (int(f[11]) + int(f[12])) / tick
        except (FileNotFoundError, IndexError):
            pass
    return total


def machine_busy_s():
    """CPU seconds the whole machine has been busy (all cores), from /proc/stat."""
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = f[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def rss_mib(pids, field="VmRSS"):
    total = 0
    for pid in pids:
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith(field + ":"):
                    total += int(line.split()[1]) / 1024
        except FileNotFoundError:
            pass
    return total


def wrk(port, path, auth=False, close=False):
    lua = f"{work}/wrk.lua"
    headers = ""
    if auth:
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        headers += f'wrk.headers["Proxy-Authorization"] = "Basic {token}"\n'
    if close:
        headers += 'wrk.headers["Connection"] = "close"\n'
    open(lua, "w").write(f'wrk.path = "{path}"\n{headers}')
    before = origin_count()
    out = sh(["wrk", "-t1", f"-c{CONNS}", f"-d{DUR}s", "--latency", "-s", lua, f"http://127.0.0.1:{port}"])
    arrived = origin_count() - before
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    lat = {m.group(1): m.group(2) for m in re.finditer(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M)}

    def ms(v):
        n, u = re.match(r"([\d.]+)(\w+)", v).groups()
        return float(n) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[u]

    return {
        "rps": reqs / DUR,
        "requests": reqs,
        "arrived": arrived,
        "p50_ms": ms(lat["50"]),
        "p99_ms": ms(lat["99"]),
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "errors": errors.group(1) if errors else "",
    }


def loadgen(*args, timeout=600, env=None):
    r = subprocess.run([LOADGEN, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)
    if r.returncode != 0:
        print(f"# loadgen {' '.join(map(str, args))} failed: {r.stderr.strip()[-300:]}", file=sys.stderr)
        return "mbps 0 rate 0 done 0 errors 1"
    return r.stdout


results = {}
INTERCEPT_SQUID = "?"


def record(test, who, value):
    results.setdefault(test, {}).setdefault(who, []).append(value)


def main():
    try:
        run()
    finally:
        cleanup()


def run():
    for port in P.values():
        assert_free(port)
    sh(["htpasswd", "-b", "-c", f"{work}/htpasswd", USER, PASSWORD])
    shutil.chown(f"{work}", "proxy", "proxy")
    os.chmod(work, 0o755)
    nginx()
    start([LOADGEN, "echo", f"127.0.0.1:{P['echo']}"], "echo")
    start([LOADGEN, "pong", f"127.0.0.1:{P['pong']}"], "pong")
    start([LOADGEN, "tls-origin", f"127.0.0.1:{P['tls']}", f"{work}/bench-ca.pem", f"127.0.0.1:{P['tls12']}"], "tls")
    wait_port(P["echo"]); wait_port(P["pong"]); wait_port(P["tls"]); wait_port(P["tls12"])
    gh_pid = gatehouse("gh", P["gh"], False)
    gha_pid = gatehouse("gh_auth", P["gh_auth"], True)
    ghd_pid = gatehouse("gh_detect", P["gh_detect"], False, detect=True)
    squid("sq1", P["sq1"], 1, False)
    squid("sq2", P["sq2"], 2, False)
    squid("sq_auth", P["sq_auth"], 1, True)
    time.sleep(1)
    pids = {"gatehouse": [gh_pid], "gatehouse_auth": [gha_pid], "gatehouse_detect": [ghd_pid], "squid_w1": squid_pids("sq1"),
            "squid_w2": squid_pids("sq2"), "squid_auth": squid_pids("sq_auth")}
    url = f"http://127.0.0.1:{P['origin']}/1k.bin"
    ports = {"gatehouse": P["gh"], "squid_w1": P["sq1"], "squid_w2": P["sq2"]}
    for rep in range(REPS):
        print(f"# repetition {rep + 1}/{REPS}", file=sys.stderr)
        # 1. small GET, keep-alive
        if want("get_keepalive"):
            direct = wrk(P["origin"], "/1k.bin")
            record("get_keepalive", "direct", direct)
            for who, port in ports.items():
                c0 = cpu_seconds(pids[who])
                r = wrk(port, url)
                r["cpu_us_per_req"] = (cpu_seconds(pids[who]) - c0) * 1e6 / max(r["requests"], 1)
                record("get_keepalive", who, r)
        # 2. Basic auth on every request (cached), and a new connection per request
        for who, port in (("gatehouse", P["gh_auth"]), ("squid_w1", P["sq_auth"])):
            if want("get_basic_auth"):
                record("get_basic_auth", who, wrk(port, url, auth=True))
        for who, port in ports.items():
            if want("get_new_connection"):
                record("get_new_connection", who, wrk(port, url, close=True))
        # 3. CONNECT setup rate
        for who, port in ports.items() if want("connect_rate") else ():
            c0 = cpu_seconds(pids[who])
            out = loadgen("connect-rate", f"127.0.0.1:{port}", f"127.0.0.1:{P['pong']}", CONNS, DUR)
            m = re.search(r"rate ([\d.]+) done (\d+) errors (\d+)", out) or re.search(r"rate (0) done (0) errors (1)", "rate 0 done 0 errors 1")
            cpu = (cpu_seconds(pids[who]) - c0) * 1e6 / max(int(m.group(2)), 1)
            record("connect_rate", who, {"rate": float(m.group(1)), "errors": int(m.group(3)), "cpu_us_per_tunnel": cpu})
        # 5. TLS through CONNECT: Gatehouse classifies and checks the origin's
        # certificate (verdict cache warm: one SNI; cold: a new SNI each time);
        # Squid tunnels without looking; direct is the handshake cost alone.
        # The TLS 1.3 origin costs Gatehouse a probe per new (address, SNI);
        # the TLS 1.2 one is verified on the tunnel's own connection.
        tls_rows = [(f"tls_handshakes_{m}", m, P["tls"]) for m in ("warm", "cold")]
        tls_rows += [(f"tls12_handshakes_{m}", m, P["tls12"]) for m in ("warm", "cold")]
        for test, mode, origin in tls_rows if want("tls") else ():
            for who, port in (("direct", None), ("gatehouse", P["gh_detect"]), ("squid_w1", P["sq1"])):
                key = "gatehouse_detect" if who == "gatehouse" else who
                c0 = cpu_seconds(pids.get(key, []))
                out = loadgen("tls-rate", f"127.0.0.1:{port}" if port else "direct", f"127.0.0.1:{origin}",
                              CONNS, DUR, f"{work}/bench-ca.pem", mode)
                m = re.search(r"rate ([\d.]+) done (\d+) errors (\d+)", out)
                r = {"rate": float(m.group(1)), "errors": int(m.group(3))}
                if port:
                    r["cpu_us_per_tunnel"] = (cpu_seconds(pids[key]) - c0) * 1e6 / max(int(m.group(2)), 1)
                record(test, who, r)
        # 4. bulk tunnels: 1 GiB each way, through 1 and through 8 tunnels
        gib = 1 << 30
        for tunnels in (1, 8) if want("bulk") else ():
            test = f"bulk_{tunnels}_tunnels"
            # Machine-wide CPU per GiB moved: on 2 shared cores the transfer is CPU-bound,
            # so this bounds the ratio to direct; the proxy's own CPU (all its processes,
            # utime + stime) per GiB is the proxy's cost. A GiB moved counts either way:
            # each row moves 2 GiB (1 GiB each way).
            for who, port in [("direct", None)] + list(ports.items()):
                c0, p0 = machine_busy_s(), cpu_seconds(pids.get(who, []))
                out = loadgen("bulk", f"127.0.0.1:{port}" if port else "direct", f"127.0.0.1:{P['echo']}", tunnels, gib // tunnels)
                busy, own = machine_busy_s() - c0, cpu_seconds(pids.get(who, [])) - p0
                r = {"mbps": float(re.search(r"mbps ([\d.]+)", out).group(1)), "machine_cpu_s_per_gib": busy / 2}
                if port:
                    r["proxy_cpu_ms_per_gib"] = own * 1000 / 2
                record(test, who, r)
    # 7. LDAP realm: 1,000 distinct users, a cold pass (each user once), then warm
    if want("ldap"):
        ldap_lab()
        ghl_pid = gatehouse("gh_ldap", P["gh_ldap"], True, realm=f"{work}/ldap-realm.toml")
        squid("sq_ldap", P["sq_ldap"], 1, False, ldap=True)
        for who, port, first in (("gatehouse", P["gh_ldap"], 0), ("squid_w1", P["sq_ldap"], LDAP_USERS)):
            for phase, mode in (("cold", "once"), ("warm", str(DUR))):
                before = ldap_ops()
                out = loadgen("users", f"127.0.0.1:{port}", url, first, LDAP_USERS, CONNS, mode)
                m = re.search(r"rate ([\d.]+) done (\d+) errors (\d+)", out)
                srch, bind = (a - b for a, b in zip(ldap_ops(), before))
                results.setdefault(f"ldap_{phase}", {})[who] = [
                    {"rate": float(m.group(1)), "requests": int(m.group(2)), "errors": int(m.group(3)),
                     "searches": srch, "binds": bind}]
    # 7b. Kerberos sign-ins: a fresh AP-REQ per new connection (integration/bench/signin.py)
    if want("negotiate_signin"):
        signin.negotiate_signin(sys.modules[__name__])
    # 7c. NTLM handshakes through winbind (integration/bench/signin_ntlm.py)
    if want("ntlm_signin"):
        signin_ntlm.ntlm_signin(sys.modules[__name__])
    # 8. policy at scale: big lists from files and many rules, against no policy
    if want("policy"):
        policy_scale()
    # 9. TLS interception: Gatehouse `intercept` against Squid's `ssl_bump bump`
    if want("intercept"):
        intercept_scale()
    # 10. WebSocket echo through interception (Gatehouse `intercept`, Squid `ssl_bump bump`)
    if want("websocket"):
        websocket_scale()
    # 6. memory: idle authenticated tunnels (once; 9000 = the fd limit's worth)
    count = int(os.environ.get("IDLE_TUNNELS", "9000"))
    for who, port, pid_key in () if not want("idle_tunnels") else (("gatehouse", P["gh_auth"], "gatehouse_auth"), ("squid_w1", P["sq_auth"], "squid_auth")):
        # The baseline is the proxy idle after one sign-in: the first one sets up what every
        # later one reuses (Gatehouse's argon2 buffer, 19 MiB; Squid's helpers), not the burst's.
        warm = subprocess.Popen([LOADGEN, "idle", f"127.0.0.1:{port}", f"127.0.0.1:{P['echo']}", "1", f"{USER}:{PASSWORD}"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        warm.stdout.readline(); warm.stdin.close(); warm.wait(timeout=60)
        time.sleep(1)
        before = rss_mib(pids[pid_key])
        p = subprocess.Popen([LOADGEN, "idle", f"127.0.0.1:{port}", f"127.0.0.1:{P['echo']}", str(count), f"{USER}:{PASSWORD}"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = p.stdout.readline()
        opened = int(re.search(r"ready (\d+)", line).group(1)) if "ready" in line else 0
        time.sleep(1)
        during = rss_mib(pids[pid_key])
        p.stdin.close(); p.wait(timeout=60)
        # Memory given back: RSS each second for up to a minute after the burst closed,
        # until it is within 20% of the idle baseline.
        closed, after, back_s = time.time(), during, None
        while time.time() - closed < 60:
            time.sleep(1)
            after = rss_mib(pids[pid_key])
            if after <= before * 1.2:
                back_s = time.time() - closed
                break
        results.setdefault("idle_tunnels", {})[who] = [{"tunnels": opened, "rss_mib": during, "rss_before_mib": before,
                                                        "kb_per_tunnel": (during - before) * 1024 / max(opened, 1),
                                                        "rss_after_mib": after, "back_within_20pct_s": back_s}]
    for who in ("gatehouse", "squid_w1", "squid_w2"):
        results.setdefault("peak_rss", {})[who] = [{"mib": rss_mib(pids[who], "VmHWM")}]
    report()


POLICY_DOMAINS = int(os.environ.get("POLICY_DOMAINS", "1000000"))
POLICY_CIDRS = int(os.environ.get("POLICY_CIDRS", "100000"))
POLICY_RULES = int(os.environ.get("POLICY_RULES", "10000"))
ORIGIN_NAME = "origin.bench.test"


def policy_lists():
    """Deterministic lists: half exact names, half `.domain`s, none overlapping and none
    matching the origin; /28s from 11.0.0.0 up (not the origin's 127.0.0.1); rules each
    filed under a user, a host, a group or a port, then one rule that does match."""
    d = f"{work}/policy"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/domains.txt", "w") as f:
        f.write("# generated block list\n")
        for i in range(POLICY_DOMAINS):
            f.write(f"blk{i:07d}.example{i % 997}.test\n" if i % 2 else f".sub{i:07d}.test\n")
    with open(f"{d}/cidrs.txt", "w") as f:
        base = 11 << 24
        for i in range(POLICY_CIDRS):
            a = base + i * 16
            f.write(f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}/28\n")
    rules = ['default = "allow"', "[objects]", 'domains = { host_file = "domains.txt" }',
             'cidrs = { dest_file = "cidrs.txt" }']
    open(f"{d}/domains.toml", "w").write("\n".join(rules[:3] + ['[[layers]]', 'name = "blocklist"', '[[layers.rules]]',
        'name = "blocked-domains"', 'host = ["@domains"]', 'action = "deny"', '']))
    open(f"{d}/cidrs.toml", "w").write("\n".join(rules[:2] + rules[3:] + ['[[layers]]', 'name = "blocklist"', '[[layers.rules]]',
        'name = "blocked-nets"', 'dest = ["@cidrs"]', 'action = "deny"', '']))
    out = ['default = "deny"', '[[layers]]', 'name = "many"']
    for i in range(POLICY_RULES):
        cond = [f'user = ["u{i}"]\nhost = ["h{i}.test"]', f'host = [".d{i}.test"]',
                f'group = ["g{i}"]\nmethod = ["GET"]', f'port = [{8000 + i % 50}]\nclient = ["10.{i % 250}.0.0/16"]'][i % 4]
        out.append(f'[[layers.rules]]\nname = "r{i}"\n{cond}\naction = "{"deny" if i % 3 else "allow"}"')
    out.append(f'[[layers.rules]]\nname = "allow-origin"\nhost = ["{ORIGIN_NAME}"]\naction = "allow"\n')
    open(f"{d}/rules.toml", "w").write("\n".join(out))
    open(f"{d}/hosts", "w").write(f"127.0.0.1 {ORIGIN_NAME}\n")
    shutil.chown(d, "proxy", "proxy")


def policy_scale():
    """1 KiB GETs by name through: no policy; a 1M-domain host_file; a 100k-CIDR dest_file;
    10k rules — Gatehouse against Squid with the same lists (`dstdomain`/`dst` from files).
    Start-up time (to listening) and RSS are taken per proxy; the list's share is the
    difference from the same proxy without it."""
    d = f"{work}/policy"
    policy_lists()
    resolver = f'[resolver]\nsystem = false\nhosts = {{ "{ORIGIN_NAME}" = ["127.0.0.1"] }}\n'
    squid_hosts = f"hosts_file {d}/hosts\n"
    setups = [
        ("none", "", "", "", 0),
        ("domains", f'[policy]\nfile = "{d}/domains.toml"\n', f'acl big dstdomain "{d}/domains.txt"\nhttp_access deny big\n',
         "squid", POLICY_DOMAINS),
        ("cidrs", f'[policy]\nfile = "{d}/cidrs.toml"\n', f'acl big dst "{d}/cidrs.txt"\nhttp_access deny big\n',
         "squid", POLICY_CIDRS),
        ("rules", f'[policy]\nfile = "{d}/rules.toml"\n', None, None, POLICY_RULES),
    ]
    procs_by = {}
    for name, gh_extra, sq_extra, _, entries in setups:
        t0 = time.time()
        pid = gatehouse(f"gh_pol_{name}", P[f"gh_pol_{name}"], False, extra=resolver + gh_extra, wait=120)
        load = time.time() - t0
        procs_by[("gatehouse", name)] = ([pid], P[f"gh_pol_{name}"])
        record("policy_load", f"gatehouse_{name}", {"load_s": load, "rss_mib": rss_mib([pid]), "entries": entries})
        if sq_extra is not None:
            t0 = time.time()
            squid(f"sq_pol_{name}", P[f"sq_pol_{name}"], 1, False, extra=squid_hosts + sq_extra, wait=300)
            load = time.time() - t0
            pids = squid_pids(f"sq_pol_{name}")
            procs_by[("squid_w1", name)] = (pids, P[f"sq_pol_{name}"])
            record("policy_load", f"squid_w1_{name}", {"load_s": load, "rss_mib": rss_mib(pids), "entries": entries})
    url = f"http://{ORIGIN_NAME}:{P['origin']}/1k.bin"
    for rep in range(REPS):
        print(f"# policy repetition {rep + 1}/{REPS}", file=sys.stderr)
        # Alternating: each setup's Gatehouse, then its Squid, so drift hits both alike.
        for name, *_ in setups:
            for who in ("gatehouse", "squid_w1"):
                if (who, name) not in procs_by:
                    continue
                pids, port = procs_by[(who, name)]
                c0 = cpu_seconds(pids)
                r = wrk(port, url)
                r["cpu_us_per_req"] = (cpu_seconds(pids) - c0) * 1e6 / max(r["requests"], 1)
                record(f"policy_{name}", who, r)


def openssl_ca(name, cn):
    """A CA (ECDSA P-256) made with openssl: {work}/{name}.pem and .key (0600)."""
    key, pem = f"{work}/{name}.key", f"{work}/{name}.pem"
    sh(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", key, "-out", pem, "-subj", f"/CN={cn}", "-days", "30",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    os.chmod(key, 0o600)
    return pem, key


def squid_openssl():
    """Debian's squid-openssl (ssl_bump), unpacked beside the installed squid: the packages conflict."""
    root = f"{work}/squid-openssl"
    if not os.path.exists(f"{root}/usr/sbin/squid"):
        subprocess.run(["apt-get", "download", "-q", "squid-openssl"], cwd=work, check=True, capture_output=True)
        deb = [f for f in os.listdir(work) if f.startswith("squid-openssl_") and f.endswith(".deb")][0]
        subprocess.run(["dpkg", "-x", f"{work}/{deb}", root], check=True)
    return root


def intercept_scale():
    """1 KiB GETs over HTTPS through an intercepting proxy (nginx with TLS as the origin):
    requests/s on kept-alive tunnels, and new tunnels/s (CONNECT, handshake with a leaf from a
    warm cache, one GET) — Gatehouse `intercept` vs Squid 5.7 (squid-openssl) `ssl_bump bump`."""
    origin_ca, origin_ca_key = openssl_ca("origin-ca", "Bench Origin CA")
    sh(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", f"{work}/origin.key", "-out", f"{work}/origin.csr", "-subj", "/CN=www.bench.test"])
    open(f"{work}/origin.ext", "w").write("subjectAltName=DNS:www.bench.test\n")
    sh(["openssl", "x509", "-req", "-in", f"{work}/origin.csr", "-CA", origin_ca, "-CAkey", origin_ca_key,
        "-CAcreateserial", "-out", f"{work}/origin.pem", "-days", "30", "-extfile", f"{work}/origin.ext"])
    conf = f"""worker_processes 1; daemon off; pid {work}/nginx-tls.pid; error_log {work}/nginx-tls.err;
events {{ worker_connections 20000; }}
http {{ access_log {work}/nginx-tls.log; keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{P['https']} ssl; ssl_certificate {work}/origin.pem; ssl_certificate_key {work}/origin.key;
           ssl_session_cache off; ssl_session_tickets off; root {work}/www; }} }}"""
    open(f"{work}/nginx-tls.conf", "w").write(conf)
    start(["nginx", "-c", f"{work}/nginx-tls.conf"], "nginx-tls")
    wait_port(P["https"])
    proxy_ca, proxy_key = openssl_ca("proxy-ca", "Bench Interception CA")
    open(f"{work}/intercept-policy.toml", "w").write(
        '[[layers]]\nname = "https"\n[[layers.rules]]\nname = "intercept-all"\nmethod = ["CONNECT"]\naction = "intercept"\n')
    open(f"{work}/gh_intercept.toml", "w").write(f"""[listener]
addresses = ["127.0.0.1:{P['gh_intercept']}"]
max_connections = 19000
max_connections_per_address = 19000
[tunnel]
allowed_ports = [{P['https']}]
[resolver]
system = false
hosts = {{ "www.bench.test" = ["127.0.0.1"] }}
[detection]
ca_file = "{origin_ca}"
[intercept]
ca_cert = "{proxy_ca}"
ca_key = "{proxy_key}"
[policy]
file = "{work}/intercept-policy.toml"
[accesslog]
path = "{work}/gh_intercept.access.log"
[log]
level = "warn"
[auth]
required = false
realms = ["{work}/local.toml"]
""")
    ghi = start([GH, "run", "--config", f"{work}/gh_intercept.toml"], "gh_intercept")
    wait_port(P["gh_intercept"])
    root = squid_openssl()
    version = sh([f"{root}/usr/sbin/squid", "-v"]).splitlines()[0]
    d = f"{work}/sq_bump"
    os.makedirs(d, exist_ok=True)
    certgen = f"{root}/usr/lib/squid/security_file_certgen"
    sh([certgen, "-c", "-s", f"{d}/ssl_db", "-M", "16MB"])
    open(f"{work}/hosts", "w").write("127.0.0.1 www.bench.test\n")
    for f in (d, proxy_key):
        shutil.chown(f, "proxy", "proxy")
    subprocess.run(["chown", "-R", "proxy:proxy", d], check=True)
    open(f"{d}/squid.conf", "w").write(f"""http_port 127.0.0.1:{P['sq_bump']} ssl-bump tls-cert={proxy_ca} tls-key={proxy_key} generate-host-certificates=on dynamic_cert_mem_cache_size=16MB
sslcrtd_program {certgen} -s {d}/ssl_db -M 16MB
sslcrtd_children 4
acl step1 at_step SslBump1
ssl_bump peek step1
ssl_bump bump all
tls_outgoing_options cafile={origin_ca}
sslproxy_cert_error deny all
hosts_file {work}/hosts
workers 1
pid_filename {d}/squid.pid
cache_log {d}/cache.log
access_log daemon:{d}/access.log squid
coredump_dir {d}
cache deny all
cache_mem 8 MB
max_filedescriptors 20000
acl localnet src 127.0.0.0/8
acl CONNECT method CONNECT
acl https_port port {P['https']}
http_access deny CONNECT !https_port
http_access allow localnet
http_access deny all
shutdown_lifetime 1 seconds
""")
    subprocess.run([f"{root}/usr/sbin/squid", "-f", f"{d}/squid.conf"], check=True)
    wait_port(P["sq_bump"])
    time.sleep(1)
    pids = {"gatehouse": [ghi.pid], "squid_bump": squid_pids("sq_bump")}
    global INTERCEPT_SQUID
    INTERCEPT_SQUID = version
    for rep in range(REPS):
        print(f"# intercept repetition {rep + 1}/{REPS}", file=sys.stderr)
        for mode in ("keepalive", "new"):
            for who, port in (("gatehouse", P["gh_intercept"]), ("squid_bump", P["sq_bump"])):
                c0 = cpu_seconds(pids[who])
                before = sum(1 for _ in open(f"{work}/nginx-tls.log"))
                out = loadgen("https-rate", f"127.0.0.1:{port}", f"www.bench.test:{P['https']}", "www.bench.test",
                              CONNS, DUR, proxy_ca, mode)
                m = re.search(r"rate ([\d.]+) done (\d+) errors (\d+)", out)
                cpu = (cpu_seconds(pids[who]) - c0) * 1e6 / max(int(m.group(2)), 1)
                arrived = sum(1 for _ in open(f"{work}/nginx-tls.log")) - before
                if arrived < int(m.group(2)):
                    print(f"# {who} {mode}: {m.group(2)} counted, {arrived} arrived at the origin", file=sys.stderr)
                record(f"intercept_{mode}", who, {"rate": float(m.group(1)), "errors": int(m.group(3)), "cpu_us": cpu,
                                                  "arrived": arrived, "done": int(m.group(2))})


WS_CLIENTS = 4
WS_SCRIPTS = os.path.join(ROOT, "integration", "websocket")


def websocket_scale():
    """WebSocket echo round trips (32-byte messages, WS_CLIENTS Python `websockets` clients, each
    one message in flight) to a Python `websockets` TLS echo origin, through an intercepting
    proxy: messages/s and proxy CPU per message — Gatehouse `intercept` vs Squid 5.7
    (squid-openssl) `ssl_bump bump` with `http_upgrade_request_protocols websocket allow all`.
    The clients are the bottleneck: this row shows that it works and what it costs, not a peak."""
    origin_ca, origin_ca_key = openssl_ca("ws-origin-ca", "Bench WS Origin CA")
    sh(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", f"{work}/ws-origin.key", "-out", f"{work}/ws-origin.csr", "-subj", "/CN=ws.bench.test"])
    open(f"{work}/ws-origin.ext", "w").write("subjectAltName=DNS:ws.bench.test\n")
    sh(["openssl", "x509", "-req", "-in", f"{work}/ws-origin.csr", "-CA", origin_ca, "-CAkey", origin_ca_key,
        "-CAcreateserial", "-out", f"{work}/ws-origin.pem", "-days", "30", "-extfile", f"{work}/ws-origin.ext"])
    # echo.py listens on a port of its choosing and says which.
    echo = subprocess.Popen(["python3", f"{WS_SCRIPTS}/echo.py", "--cert", f"{work}/ws-origin.pem",
                             "--key", f"{work}/ws-origin.key"], stdout=subprocess.PIPE, text=True, start_new_session=True)
    procs.append(echo)
    port = int(echo.stdout.readline().strip().rsplit(":", 1)[1])
    proxy_ca, proxy_key = openssl_ca("ws-proxy-ca", "Bench WS Interception CA")
    open(f"{work}/ws-policy.toml", "w").write(
        '[[layers]]\nname = "https"\n[[layers.rules]]\nname = "intercept-all"\nmethod = ["CONNECT"]\naction = "intercept"\n')
    open(f"{work}/gh_ws.toml", "w").write(f"""[listener]
addresses = ["127.0.0.1:{P['gh_ws']}"]
[tunnel]
allowed_ports = [{port}]
[resolver]
system = false
hosts = {{ "ws.bench.test" = ["127.0.0.1"] }}
[detection]
ca_file = "{origin_ca}"
[intercept]
ca_cert = "{proxy_ca}"
ca_key = "{proxy_key}"
[policy]
file = "{work}/ws-policy.toml"
[accesslog]
path = "{work}/gh_ws.access.log"
[log]
level = "warn"
[auth]
required = false
realms = []
""")
    ghw = start([GH, "run", "--config", f"{work}/gh_ws.toml"], "gh_ws")
    wait_port(P["gh_ws"])
    root = squid_openssl()
    d = f"{work}/sq_ws"
    os.makedirs(d, exist_ok=True)
    certgen = f"{root}/usr/lib/squid/security_file_certgen"
    sh([certgen, "-c", "-s", f"{d}/ssl_db", "-M", "16MB"])
    open(f"{work}/ws-hosts", "w").write("127.0.0.1 ws.bench.test\n")
    shutil.chown(proxy_key, "proxy", "proxy")
    subprocess.run(["chown", "-R", "proxy:proxy", d], check=True)
    open(f"{d}/squid.conf", "w").write(f"""http_port 127.0.0.1:{P['sq_ws']} ssl-bump tls-cert={proxy_ca} tls-key={proxy_key} generate-host-certificates=on dynamic_cert_mem_cache_size=16MB
sslcrtd_program {certgen} -s {d}/ssl_db -M 16MB
sslcrtd_children 4
acl step1 at_step SslBump1
ssl_bump peek step1
ssl_bump bump all
tls_outgoing_options cafile={origin_ca}
sslproxy_cert_error deny all
http_upgrade_request_protocols websocket allow all
hosts_file {work}/ws-hosts
workers 1
pid_filename {d}/squid.pid
cache_log {d}/cache.log
access_log daemon:{d}/access.log squid
coredump_dir {d}
cache deny all
cache_mem 8 MB
acl localnet src 127.0.0.0/8
acl CONNECT method CONNECT
acl ws_port port {port}
http_access deny CONNECT !ws_port
http_access allow localnet
http_access deny all
shutdown_lifetime 1 seconds
""")
    subprocess.run([f"{root}/usr/sbin/squid", "-f", f"{d}/squid.conf"], check=True)
    wait_port(P["sq_ws"])
    time.sleep(1)
    pids = {"gatehouse": [ghw.pid], "squid_bump": squid_pids("sq_ws")}
    url = f"wss://ws.bench.test:{port}/echo"
    for rep in range(REPS):
        print(f"# websocket repetition {rep + 1}/{REPS}", file=sys.stderr)
        for who, proxy in (("gatehouse", P["gh_ws"]), ("squid_bump", P["sq_ws"])):
            c0 = cpu_seconds(pids[who])
            clients = [subprocess.Popen(["python3", f"{WS_SCRIPTS}/client.py", "connect", f"127.0.0.1:{proxy}", "-", url,
                                         "--ca", proxy_ca, "--seconds", str(DUR)],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                       for _ in range(WS_CLIENTS)]
            done, errors, secs = 0, 0, 0.0
            for c in clients:
                out, err = c.communicate(timeout=DUR + 60)
                m = re.match(r"OK (\d+) ([\d.]+)", out.strip())
                if m:
                    done += int(m.group(1))
                    secs = max(secs, float(m.group(2)))
                else:
                    errors += 1
                    print(f"# websocket {who}: {out.strip()} {err.strip()[-300:]}", file=sys.stderr)
            cpu = (cpu_seconds(pids[who]) - c0) * 1e6 / max(done, 1)
            record("websocket_echo", who, {"rate": done / max(secs, 1e-9), "cpu_us": cpu, "errors": errors, "done": done})


def websocket_report(lines):
    if "websocket_echo" not in results:
        return
    lines += ["", f"WebSocket echo through interception, 32-byte messages, {WS_CLIENTS} Python `websockets` clients "
              "(one message in flight each; the clients are the bottleneck); Squid: ssl_bump bump with "
              "http_upgrade_request_protocols websocket allow all", "",
              "| test | metric | gatehouse | squid bump | gatehouse / squid |", "|---|---|---|---|---|"]
    for key, label, fmt in (("rate", "messages/s", "{:.0f}"), ("cpu_us", "proxy CPU µs per message", "{:.1f}"),
                            ("errors", "failed clients", "{:.0f}")):
        g = med("websocket_echo", "gatehouse", key)
        q = med("websocket_echo", "squid_bump", key) if "squid_bump" in results["websocket_echo"] else (0, 0, 0)
        ratio = f"{g[0] / q[0]:.2f}×" if q[0] else "–"
        lines.append(f"| websocket_echo | {label} | {fmt.format(g[0])} ({fmt.format(g[1])}–{fmt.format(g[2])}) | "
                     f"{fmt.format(q[0])} ({fmt.format(q[1])}–{fmt.format(q[2])}) | {ratio} |")


def intercept_report(lines):
    if "intercept_keepalive" not in results:
        return
    lines += ["", f"TLS interception, 1 KiB GETs over HTTPS (nginx origin), {CONNS} clients; Squid: {INTERCEPT_SQUID} (squid-openssl), ssl_bump bump", "",
              "| test | metric | gatehouse | squid bump | gatehouse / squid |", "|---|---|---|---|---|"]
    for test, unit in (("intercept_keepalive", "requests/s (kept-alive tunnels)"), ("intercept_new", "new tunnels/s (one GET each)")):
        for key, label, fmt in (("rate", unit, "{:.0f}"), ("cpu_us", "CPU µs per request", "{:.1f}"), ("errors", "errors", "{:.0f}")):
            g = med(test, "gatehouse", key)
            q = med(test, "squid_bump", key)
            ratio = f"{g[0] / q[0]:.2f}×" if q[0] else "–"
            lines.append(f"| {test} | {label} | {fmt.format(g[0])} ({fmt.format(g[1])}–{fmt.format(g[2])}) | {fmt.format(q[0])} ({fmt.format(q[1])}–{fmt.format(q[2])}) | {ratio} |")
    short = [f"{t} {w}" for t in ("intercept_keepalive", "intercept_new") for w, rs in results[t].items()
             if any(r["arrived"] < r["done"] for r in rs)]
    lines.append("Origin check (nginx TLS log): " + ("every counted request arrived." if not short else "short: " + ", ".join(short)))


def policy_report(lines):
    if "policy_none" not in results:
        return
    base = {w: med("policy_none", w, "rps")[0] for w in ("gatehouse", "squid_w1")}
    lines += ["", f"Policy at scale: 1 KiB GETs by name, {POLICY_DOMAINS:,} domains / {POLICY_CIDRS:,} CIDRs from files, "
              f"{POLICY_RULES:,} rules; req/s median (min–max), ratios within this run", "",
              "| policy | gatehouse req/s | squid w1 req/s | gatehouse / squid w1 | gatehouse / its no-policy | squid / its no-policy | CPU µs/req gatehouse, squid w1 |",
              "|---|---|---|---|---|---|---|"]
    for name in ("none", "domains", "cidrs", "rules"):
        t = f"policy_{name}"
        if t not in results:
            continue
        cell = {}
        for w in ("gatehouse", "squid_w1"):
            if w in results[t]:
                m, lo, hi = med(t, w, "rps")
                cell[w] = (m, f"{m:.0f} ({lo:.0f}–{hi:.0f})")
        g, s = cell.get("gatehouse", (None, "–")), cell.get("squid_w1", (None, "–"))
        cpu = f"{med(t, 'gatehouse', 'cpu_us_per_req')[0]:.1f}"
        if "squid_w1" in results[t]:
            cpu += f", {med(t, 'squid_w1', 'cpu_us_per_req')[0]:.1f}"
        vs_squid = f"{g[0] / s[0]:.2f}×" if g[0] and s[0] else "–"
        squid_own = f"{s[0] / base['squid_w1']:.2f}×" if s[0] else "–"
        lines.append(f"| {name} | {g[1]} | {s[1]} | {vs_squid} | {g[0] / base['gatehouse']:.2f}× | {squid_own} | {cpu} |")
    pl = {w: r[0] for w, r in results["policy_load"].items()}
    lines += ["", "| start-up with | gatehouse to listening | gatehouse RSS | squid w1 to listening | squid w1 RSS |", "|---|---|---|---|---|"]
    for name in ("none", "domains", "cidrs", "rules"):
        g, s = pl.get(f"gatehouse_{name}"), pl.get(f"squid_w1_{name}")
        sq = f"{s['load_s']:.2f} s | {s['rss_mib']:.1f} MiB" if s else "– | –"
        lines.append(f"| {name} | {g['load_s']:.2f} s | {g['rss_mib']:.1f} MiB | {sq} |")


def med(test, who, key):
    vals = [r[key] for r in results[test][who]]
    return statistics.median(vals), min(vals), max(vals)


def report():
    ts = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [f"Gatehouse vs Squid 5.7 — {ts}, {os.cpu_count()} cores, {REPS} × {DUR} s, median (min–max)", ""]
    lines.append("| test | metric | direct | gatehouse | squid w1 | squid w2 | gatehouse / squid w1 | gatehouse / direct |")
    lines.append("|---|---|---|---|---|---|---|---|")

    def row(test, metric, key, fmt="{:.0f}"):
        if test not in results:
            return
        cells = {}
        for who in ("direct", "gatehouse", "squid_w1", "squid_w2"):
            if all(key in r for r in results.get(test, {}).get(who, [{}])):
                m, lo, hi = med(test, who, key)
                cells[who] = (m, f"{fmt.format(m)} ({fmt.format(lo)}–{fmt.format(hi)})")
        get = lambda w: cells.get(w, (None, "–"))
        g, s1, d = get("gatehouse")[0], get("squid_w1")[0], get("direct")[0]
        ratio = lambda a, b: f"{a / b:.2f}×" if a and b else "–"
        lines.append(f"| {test} | {metric} | {get('direct')[1]} | {get('gatehouse')[1]} | {get('squid_w1')[1]} | {get('squid_w2')[1]} | {ratio(g, s1)} | {ratio(g, d)} |")

    row("get_keepalive", "req/s", "rps")
    row("get_keepalive", "p50 ms", "p50_ms", "{:.2f}")
    row("get_keepalive", "p99 ms", "p99_ms", "{:.2f}")
    row("get_keepalive", "CPU µs/req", "cpu_us_per_req", "{:.1f}")
    row("get_basic_auth", "req/s", "rps")
    row("get_basic_auth", "p99 ms", "p99_ms", "{:.2f}")
    row("get_new_connection", "req/s", "rps")
    row("connect_rate", "tunnels/s", "rate")
    row("connect_rate", "CPU µs/tunnel", "cpu_us_per_tunnel", "{:.1f}")
    row("tls_handshakes_warm", "handshakes/s", "rate")
    row("tls_handshakes_warm", "CPU µs/tunnel", "cpu_us_per_tunnel", "{:.1f}")
    row("tls_handshakes_cold", "handshakes/s", "rate")
    row("tls_handshakes_cold", "CPU µs/tunnel", "cpu_us_per_tunnel", "{:.1f}")
    row("tls12_handshakes_warm", "handshakes/s", "rate")
    row("tls12_handshakes_warm", "CPU µs/tunnel", "cpu_us_per_tunnel", "{:.1f}")
    row("tls12_handshakes_cold", "handshakes/s", "rate")
    row("tls12_handshakes_cold", "CPU µs/tunnel", "cpu_us_per_tunnel", "{:.1f}")
    row("bulk_1_tunnels", "MB/s", "mbps")
    row("bulk_1_tunnels", "machine CPU s/GiB", "machine_cpu_s_per_gib", "{:.2f}")
    row("bulk_1_tunnels", "proxy CPU ms/GiB", "proxy_cpu_ms_per_gib")
    row("bulk_8_tunnels", "MB/s", "mbps")
    row("bulk_8_tunnels", "machine CPU s/GiB", "machine_cpu_s_per_gib", "{:.2f}")
    row("bulk_8_tunnels", "proxy CPU ms/GiB", "proxy_cpu_ms_per_gib")
    if "ldap_cold" in results:
        c, w = results["ldap_cold"], results["ldap_warm"]
        lines += ["", f"LDAP realm, {LDAP_USERS} distinct users (lab slapd; Squid: basic_ldap_auth, 4 helpers; directory operations from slapd's stats log)", "",
                  "| phase | metric | gatehouse | squid w1 | gatehouse / squid w1 |", "|---|---|---|---|---|"]
        for phase, d in (("cold (each user once)", c), ("warm", w)):
            g, q = d["gatehouse"][0], d["squid_w1"][0]
            lines.append(f"| {phase} | req/s | {g['rate']:.0f} | {q['rate']:.0f} | {g['rate'] / max(q['rate'], 1e-9):.2f}× |")
            for k in ("searches", "binds"):
                lines.append(f"| {phase} | {k} per request | {g[k] / max(g['requests'], 1):.3f} | {q[k] / max(q['requests'], 1):.3f} | – |")
    signin.report(sys.modules[__name__], lines)
    signin_ntlm.report(sys.modules[__name__], lines)
    policy_report(lines)
    intercept_report(lines)
    websocket_report(lines)
    lines.append("")
    it = results.get("idle_tunnels")
    if it:
        lines += ["Idle authenticated tunnels (opened one after another, held, then all closed):", "",
                  "| proxy | tunnels | RSS idle before | RSS with them open | KB per tunnel | RSS 60 s after they closed (or when back within 20%) | back within 20% after |",
                  "|---|---|---|---|---|---|---|"]
        for who in ("gatehouse", "squid_w1"):
            r = it[who][0]
            back = f"{r['back_within_20pct_s']:.0f} s" if r.get("back_within_20pct_s") is not None else "not within 60 s"
            lines.append(f"| {who} | {r['tunnels']} | {r['rss_before_mib']:.1f} MiB | {r['rss_mib']:.1f} MiB | {r['kb_per_tunnel']:.1f} | "
                         f"{r['rss_after_mib']:.1f} MiB | {back} |")
        lines.append("")
    pk = results["peak_rss"]
    lines.append(f"Peak RSS under load: gatehouse {pk['gatehouse'][0]['mib']:.1f} MiB, squid w1 {pk['squid_w1'][0]['mib']:.1f} MiB, squid w2 {pk['squid_w2'][0]['mib']:.1f} MiB (all processes).")
    mism = [(t, w, r) for t in ("get_keepalive", "get_basic_auth", "get_new_connection") for w, rs in results.get(t, {}).items()
            for r in rs if w != "direct" and (r["arrived"] < r["requests"] or r["non2xx"])]
    lines.append("Origin check: every counted request arrived at nginx." if not mism else f"Origin check FAILED: {mism}")
    errs = [f"{t} {w}: {r['errors']}" for t, ws in results.items() for w, rs in ws.items() for r in rs
            if isinstance(r.get("errors"), int) and r["errors"] > 0]
    lines.append("Tunnel errors: none." if not errs else "Tunnel errors (failed tunnels, not counted in rates): " + "; ".join(errs))
    print("\n".join(lines))
    json.dump({"date": ts, "cores": os.cpu_count(), "reps": REPS, "duration_s": DUR, "results": results},
              open(results_file(), "w"), indent=1)


def results_file():
    """Under integration/bench/results/; a run of some tests (TESTS=...) does not overwrite
    the full run's results."""
    name = "bench-results.json" if not ONLY else f"bench-results-{'-'.join(sorted(ONLY))}.json"
    out = os.path.join(ROOT, "integration", "bench", "results")
    os.makedirs(out, exist_ok=True)
    return os.path.join(out, name)


if __name__ == "__main__":
    main()
