// One GET through the proxy with a Node proxy library, as Node apps use it.
// Prints "STATUS BODY" or "ERROR reason". The origin's CA comes the way Node
// users give it: NODE_EXTRA_CA_CERTS.
//   node node_get.mjs undici PROXY_URL URL [tunnel|no-tunnel]
//   node node_get.mjs https-proxy-agent PROXY_URL URL
// PROXY_URL carries the credentials as userinfo (http://user:pass@host:port).
// undici's ProxyAgent tunnels every request through a CONNECT unless
// `proxyTunnel: false` (undici >= 7): then an http:// URL is sent to the
// proxy in absolute form, as a plain forward request.
import http from "node:http";
import https from "node:https";
import { ProxyAgent, request } from "undici";
import { HttpsProxyAgent } from "https-proxy-agent";

const [lib, proxy, url, tunnel] = process.argv.slice(2);

function viaHttpsProxyAgent() {
  const agent = new HttpsProxyAgent(proxy);
  const get = url.startsWith("https:") ? https.get : http.get;
  return new Promise((resolve, reject) => {
    const req = get(url, { agent }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c) => (body += c));
      res.on("end", () => resolve([res.statusCode, body]));
      res.on("error", reject);
    });
    req.setTimeout(30000, () => req.destroy(new Error("timeout")));
    req.on("error", reject);
  });
}

async function viaUndici() {
  const agent = new ProxyAgent({ uri: proxy, proxyTunnel: tunnel !== "no-tunnel" });
  try {
    const r = await request(url, { dispatcher: agent, headersTimeout: 30000 });
    return [r.statusCode, await r.body.text()];
  } finally {
    await agent.close();
  }
}

try {
  const [status, body] = lib === "undici" ? await viaUndici() : await viaHttpsProxyAgent();
  console.log(`${status} ${body.trim()}`);
} catch (e) {
  console.log(`ERROR ${e.code ?? ""} ${e.message}`);
}
