// undici's ProxyAgent, as Node apps use it: an http:// URL goes through a
// CONNECT tunnel (undici 6 always tunnels). Prints "STATUS BODY" per request.
//   node undici_get.mjs PROXY_URL PROXY_AUTHORIZATION URL...
import { ProxyAgent, request } from "undici";

const [proxy, token, ...urls] = process.argv.slice(2);
const agent = new ProxyAgent({ uri: proxy, token });
for (const url of urls) {
  try {
    const r = await request(url, { dispatcher: agent, headers: { "user-agent": "undici-test" } });
    console.log(`${r.statusCode} ${(await r.body.text()).trim().replace(/\n/g, " | ")}`);
  } catch (e) {
    console.log(`ERROR ${e.code ?? e.message}`);
  }
}
await agent.close();
