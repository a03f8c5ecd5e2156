// java.net.http.HttpClient through the proxy, as a Java app is set up: an
// explicit ProxySelector, proxy credentials from an Authenticator, the
// origin's CA in an SSLContext. One JVM runs a batch of cases (a JVM starts
// slowly); each is printed as one line:
//   NAME STATUS BODY... ms=ELAPSED   or   NAME ERROR EXCEPTION ms=ELAPSED
// Usage: java Clients.java PROXY_PORT CASE...
//   CASE = NAME|URL|USER|PASSWORD|CA_PEM   (USER "-": no Authenticator at all)
// With no CASE, cases are read from standard input, one a line, each answered
// at once (a test can change the proxy's state between two cases).
// Whether Basic may answer a 407 to a CONNECT is the JVM's system property
// jdk.http.auth.tunneling.disabledSchemes (default "Basic": it may not), read
// once per JVM: the test runs one JVM with it emptied and one without.
import java.io.FileInputStream;
import java.net.Authenticator;
import java.net.InetSocketAddress;
import java.net.PasswordAuthentication;
import java.net.ProxySelector;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.security.KeyStore;
import java.security.cert.CertificateFactory;
import java.time.Duration;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;

public class Clients {
    static SSLContext trusting(String pem) throws Exception {
        var store = KeyStore.getInstance(KeyStore.getDefaultType());
        store.load(null, null);
        try (var in = new FileInputStream(pem)) {
            int i = 0;
            for (var cert : CertificateFactory.getInstance("X.509").generateCertificates(in)) {
                store.setCertificateEntry("ca" + i++, cert);
            }
        }
        var tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(store);
        var ctx = SSLContext.getInstance("TLS");
        ctx.init(null, tmf.getTrustManagers(), null);
        return ctx;
    }

    public static void main(String[] args) throws Exception {
        int port = Integer.parseInt(args[0]);
        if (args.length > 1) {
            for (int k = 1; k < args.length; k++) {
                System.out.println(run(port, args[k]));
            }
            return;
        }
        var in = new java.io.BufferedReader(new java.io.InputStreamReader(System.in));
        for (String line; (line = in.readLine()) != null; ) {
            System.out.println(run(port, line));
            System.out.flush();
        }
    }

    static String run(int port, String spec) {
        String[] c = spec.split("\\|", -1);
        String name = c[0], url = c[1], user = c[2], password = c[3], ca = c[4];
        long start = System.nanoTime();
        String outcome;
        try {
            var builder = HttpClient.newBuilder()
                .proxy(ProxySelector.of(new InetSocketAddress("127.0.0.1", port)))
                .connectTimeout(Duration.ofSeconds(30))
                .sslContext(trusting(ca));
            if (!user.equals("-")) {
                builder.authenticator(new Authenticator() {
                    @Override
                    protected PasswordAuthentication getPasswordAuthentication() {
                        if (getRequestorType() != RequestorType.PROXY) {
                            return null;
                        }
                        return new PasswordAuthentication(user, password.toCharArray());
                    }
                });
            }
            var request = HttpRequest.newBuilder(URI.create(url))
                .timeout(Duration.ofSeconds(30)).build();
            var r = builder.build().send(request, HttpResponse.BodyHandlers.ofString());
            // A 407 to a CONNECT comes back as a response with no body.
            String body = r.body() == null ? "" : r.body().trim().replace('\n', ' ');
            outcome = r.statusCode() + " " + body;
        } catch (Exception e) {
            outcome = "ERROR " + e.toString().replace('\n', ' ');
        }
        long ms = (System.nanoTime() - start) / 1_000_000;
        return name + " " + outcome + " ms=" + ms;
    }
}
