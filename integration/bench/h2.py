"""Intercepted requests/s over HTTP/2 vs HTTP/1.1, with h2load (Debian
nghttp2-client) against an HTTP/2 nginx origin; Squid 5.7 (squid-openssl)
`ssl_bump bump` as bench.py runs it, which speaks HTTP/1.1 only.

  python3 integration/bench/h2.py          (after cargo build --release and the loadgen)
  REPS=1 DURATION=5 python3 integration/bench/h2.py

h2load cannot speak to a proxy: `loadgen shim` turns each of its connections
into a CONNECT through the proxy, then copies bytes (its CPU is the same for
every row). h2load's TLS sends no SNI (it dials 127.0.0.1) and names the origin
in `:authority` / `Host`, so both proxies mint for the CONNECT's name. Rows
alternate in each repetition; medians (min-max) and CPU per request of the
proxy process from /proc.
"""
import os, re, shutil, subprocess, sys, time

sys.path.insert(0, os.path.dirname(__file__))
import bench  # noqa: E402  (its helpers; its main does not run on import)
from bench import work, start, sh, wait_port, openssl_ca, squid_openssl, cpu_seconds, squid_pids, GH, LOADGEN, REPS, DUR  # noqa: E402

P = dict(origin=21095, gh=21138, sq=21139, gh_shim=21150, sq_shim=21151)
NAME = "www.bench.test"
# HTTP/1.1: one request at a time per connection (no pipelining); HTTP/2: fewer
# connections, several streams each; the same number of requests in flight.
ROWS = [
    ("gatehouse", "h2", P["gh_shim"], ["-c", "8", "-m", "8"]),
    ("gatehouse", "http/1.1", P["gh_shim"], ["--h1", "-c", "64", "-m", "1"]),
    ("squid_bump", "http/1.1", P["sq_shim"], ["--h1", "-c", "64", "-m", "1"]),
]


def setup():
    # nginx's worker and Squid run as other users: they must read the work dir.
    shutil.chown(work, "proxy", "proxy")
    os.chmod(work, 0o755)
    origin_ca, origin_ca_key = openssl_ca("origin-ca", "Bench Origin CA")
    sh(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", f"{work}/origin.key", "-out", f"{work}/origin.csr", "-subj", f"/CN={NAME}"])
    open(f"{work}/origin.ext", "w").write(f"subjectAltName=DNS:{NAME}\n")
    sh(["openssl", "x509", "-req", "-in", f"{work}/origin.csr", "-CA", origin_ca, "-CAkey", origin_ca_key,
        "-CAcreateserial", "-out", f"{work}/origin.pem", "-days", "30", "-extfile", f"{work}/origin.ext"])
    os.makedirs(f"{work}/www", exist_ok=True)
    open(f"{work}/www/1k.bin", "wb").write(b"x" * 1024)
    open(f"{work}/nginx-h2.conf", "w").write(f"""worker_processes 1; daemon off; pid {work}/nginx-h2.pid; error_log {work}/nginx-h2.err;
events {{ worker_connections 20000; }}
http {{ access_log {work}/nginx-h2.log; keepalive_requests 1000000; http2_max_requests 1000000;
  server {{ listen 127.0.0.1:{P['origin']} ssl http2; ssl_certificate {work}/origin.pem; ssl_certificate_key {work}/origin.key;
           root {work}/www; }} }}""")
    start(["nginx", "-c", f"{work}/nginx-h2.conf"], "nginx-h2")
    wait_port(P["origin"])
    proxy_ca, proxy_key = openssl_ca("proxy-ca", "Bench Interception CA")
    open(f"{work}/intercept-policy.toml", "w").write(
        '[[layers]]\nname = "https"\n[[layers.rules]]\nname = "intercept-all"\nmethod = ["CONNECT"]\naction = "intercept"\n')
    open(f"{work}/gh_h2.toml", "w").write(f"""[listener]
addresses = ["127.0.0.1:{P['gh']}"]
[tunnel]
allowed_ports = [{P['origin']}]
[resolver]
system = false
hosts = {{ "{NAME}" = ["127.0.0.1"] }}
[detection]
ca_file = "{origin_ca}"
[intercept]
ca_cert = "{proxy_ca}"
ca_key = "{proxy_key}"
[policy]
file = "{work}/intercept-policy.toml"
[accesslog]
path = "{work}/gh_h2.access.log"
[log]
level = "warn"
[auth]
required = false
realms = []
""")
    gh = start([GH, "run", "--config", f"{work}/gh_h2.toml"], "gh_h2")
    wait_port(P["gh"])
    root = squid_openssl()
    d = f"{work}/sq_h2"
    os.makedirs(d, exist_ok=True)
    certgen = f"{root}/usr/lib/squid/security_file_certgen"
    sh([certgen, "-c", "-s", f"{d}/ssl_db", "-M", "16MB"])
    open(f"{work}/hosts", "w").write(f"127.0.0.1 {NAME}\n")
    shutil.chown(proxy_key, "proxy", "proxy")
    subprocess.run(["chown", "-R", "proxy:proxy", d], check=True)
    open(f"{d}/squid.conf", "w").write(f"""http_port 127.0.0.1:{P['sq']} ssl-bump tls-cert={proxy_ca} tls-key={proxy_key} generate-host-certificates=on dynamic_cert_mem_cache_size=16MB
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
http_access allow localnet
http_access deny all
shutdown_lifetime 1 seconds
""")
    subprocess.run([f"{root}/usr/sbin/squid", "-f", f"{d}/squid.conf"], check=True)
    wait_port(P["sq"])
    for shim, proxy in (("gh_shim", "gh"), ("sq_shim", "sq")):
        start([LOADGEN, "shim", f"127.0.0.1:{P[shim]}", f"127.0.0.1:{P[proxy]}", f"{NAME}:{P['origin']}"], shim)
        wait_port(P[shim])
    time.sleep(1)
    return {"gatehouse": [gh.pid], "squid_bump": squid_pids("sq_h2")}


def h2load(port, args):
    out = subprocess.run(["h2load", "-D", str(DUR), *args, "-H", f":authority: {NAME}:{P['origin']}",
                          f"https://127.0.0.1:{port}/1k.bin"], capture_output=True, text=True, timeout=DUR + 120).stdout
    rate = re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed", out)
    proto = re.search(r"Application protocol: (\S+)", out)
    ok2xx = re.search(r"status codes: (\d+) 2xx", out)
    if not (rate and done) or not ok2xx or int(ok2xx.group(1)) == 0:
        print(out[-1500:], file=sys.stderr)
    if not (rate and done):
        return None
    return {"rate": float(rate.group(1)), "done": int(done.group(1)), "failed": int(done.group(3)),
            "ok": int(ok2xx.group(1)) if ok2xx else 0, "proto": proto.group(1) if proto else "?"}


def main():
    try:
        pids = setup()
        results = {}
        for rep in range(REPS):
            print(f"# h2 repetition {rep + 1}/{REPS}", file=sys.stderr)
            sys.stderr.flush()
            for who, proto, port, args in ROWS:
                c0 = cpu_seconds(pids[who])
                before = sum(1 for _ in open(f"{work}/nginx-h2.log"))
                r = h2load(port, args)
                if r is None:
                    continue
                r["cpu_us"] = (cpu_seconds(pids[who]) - c0) * 1e6 / max(r["ok"], 1)
                r["arrived"] = sum(1 for _ in open(f"{work}/nginx-h2.log")) - before
                results.setdefault((who, proto), []).append(r)
        print(f"Intercepted 1 KiB GETs, h2load {DUR} s x {REPS}, nginx HTTP/2 origin; 64 requests in flight\n")
        print("| proxy | client protocol | requests/s | CPU µs per request | 2xx / arrived at origin |")
        print("|---|---|---|---|---|")
        for (who, proto), rs in results.items():
            rates = sorted(r["rate"] for r in rs)
            cpu = sorted(r["cpu_us"] for r in rs)
            mid = len(rs) // 2
            ok = sum(r["ok"] for r in rs)
            arrived = sum(r["arrived"] for r in rs)
            print(f"| {who} | {proto} (negotiated: {rs[0]['proto']}) | {rates[mid]:.0f} ({rates[0]:.0f}-{rates[-1]:.0f}) "
                  f"| {cpu[mid]:.1f} | {ok} / {arrived} |")
    finally:
        f = f"{work}/sq_h2/squid.pid"
        if os.path.exists(f):
            try:
                pid = int(open(f).read().strip())
                os.kill(pid, 15)
                end = time.time() + 15
                while os.path.exists(f"/proc/{pid}") and time.time() < end:
                    time.sleep(0.1)
            except (ProcessLookupError, ValueError):
                pass
        bench.cleanup()


if __name__ == "__main__":
    main()
