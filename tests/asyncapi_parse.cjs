// Parse AsyncAPI documents with the official JavaScript parser (@asyncapi/parser), and
// print each one's diagnostics as JSON: used by tests/test_asyncapi.py.
// Usage: node asyncapi_parse.cjs PREFIX FILE... (PREFIX: where npm installed the parser)
const fs = require('node:fs');
const path = require('node:path');

const [prefix, ...files] = process.argv.slice(2);
const { Parser } = require(path.join(prefix, 'node_modules', '@asyncapi', 'parser'));

(async () => {
  const parser = new Parser();
  const results = [];
  for (const file of files) {
    const text = fs.readFileSync(file, 'utf8');
    const { document, diagnostics } = await parser.parse(text, { source: file });
    results.push({
      file,
      parsed: document !== undefined,
      diagnostics: diagnostics.map((d) => ({
        code: String(d.code),
        severity: d.severity,
        message: d.message,
        path: d.path.map(String),
      })),
    });
  }
  process.stdout.write(JSON.stringify(results));
})().catch((error) => {
  process.stderr.write(String((error && error.stack) || error));
  process.exit(1);
});
