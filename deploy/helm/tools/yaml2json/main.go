// yaml2json reads a multi-document YAML stream (the output of `helm template`) on stdin and
// writes one JSON array with a value per non-empty document, so that .ci/helm can check the
// rendered manifests with the Python standard library alone. It uses sigs.k8s.io/yaml, the
// YAML library of Kubernetes itself; .ci/helm builds it inside the cached helm-tool module,
// which already requires that library.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"sigs.k8s.io/yaml"
)

func main() {
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail("read stdin: %v", err)
	}
	docs := []json.RawMessage{}
	for i, doc := range split(in) {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		j, err := yaml.YAMLToJSONStrict([]byte(doc))
		if err != nil {
			fail("document %d: %v\n%s", i+1, err, doc)
		}
		docs = append(docs, j)
	}
	out, err := json.Marshal(docs)
	if err != nil {
		fail("encode: %v", err)
	}
	os.Stdout.Write(append(out, '\n'))
}

// split cuts the stream at lines that are exactly "---" (helm puts every document after one).
func split(in []byte) []string {
	var docs []string
	var cur strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(in))
	sc.Buffer(make([]byte, 1024*1024), 16*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimRight(line, " \t") == "---" {
			docs = append(docs, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		fail("scan: %v", err)
	}
	return append(docs, cur.String())
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "yaml2json: "+format+"\n", args...)
	os.Exit(1)
}
