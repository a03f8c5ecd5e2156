// One GET with Go's net/http as a Go program gets one: the default transport,
// which takes the proxy from HTTP_PROXY / HTTPS_PROXY (credentials as the
// URL's userinfo) and trusts the system roots or SSL_CERT_FILE. Prints
// "STATUS BODY" or "ERROR reason". Standard library only: `go run get.go URL`
// works offline.
//
// Go never sends a request for localhost or a loopback address through a
// proxy (net/http/httpproxy): the tests name their origins (origin.example.test),
// and the proxy maps the names to loopback with resolver.hosts.
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Get(os.Args[1])
	if err != nil {
		fmt.Println("ERROR", err)
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		fmt.Println("ERROR", err)
		return
	}
	fmt.Println(resp.StatusCode, strings.TrimSpace(string(body)))
}
