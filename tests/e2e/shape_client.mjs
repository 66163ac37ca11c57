// Follows one shape with the official TypeScript client and reports what it sees.
//
//   node shape_client.mjs <base-url> <table> [<options-json>]
//
// <options-json>, if given, is an object whose `where` (string) and `columns` (array of names,
// quoted where needed, e.g. ["id", "\"MixedCase\""]) are passed on to ShapeStream, and whose
// `databaseId` is sent as the `database_id` parameter and `secret` as the `secret` parameter
// (both in the URL, as an app would put them).
//
// stdout: one JSON line per Shape update: {"<row key>": <row value>, ...}, values as the client
//         parsed them (int8 -> BigInt, printed as a string).
// stderr: one JSON line per HTTP request the client sends ({"event": "request", ...}), per
//         response it receives ({"event": "response", ..., "body": <its first 2000 chars>}) and
//         per error ({"event": "error", ...}); and, just before each stdout line, an
//         {"event": "update"} marker.
// Runs until stdin closes or it gets SIGTERM/SIGINT.
import { Shape, ShapeStream } from '@electric-sql/client'

const [base, table, optionsJson] = process.argv.slice(2)
if (!base || !table) {
  process.stderr.write(`usage: node shape_client.mjs <base-url> <table> [<options-json>]\n`)
  process.exit(2)
}
const { where, columns, databaseId, secret } = optionsJson ? JSON.parse(optionsJson) : {}
const urlParams = new URLSearchParams()
if (databaseId) urlParams.set(`database_id`, databaseId)
if (secret) urlParams.set(`secret`, secret)

const toJson = (value) =>
  JSON.stringify(value, (_key, v) => (typeof v === `bigint` ? v.toString() : v))

const report = (event) => process.stderr.write(toJson(event) + `\n`)

const reportError = (err) =>
  report({
    event: `error`,
    name: err?.name,
    status: err?.status,
    message: String(err?.message ?? err),
    body: err?.json ?? err?.text,
    stack: err?.stack,
  })

// Log every exchange so a failing test can show what the client sent and what it got back.
const loggingFetch = async (...args) => {
  const url = args[0].toString()
  report({ event: `request`, url })
  let response
  try {
    response = await fetch(...args)
  } catch (err) {
    if (err?.name !== `AbortError`) report({ event: `fetch-failed`, url, message: String(err) })
    throw err
  }
  // the start of the body, for failure messages (read from a clone, the client reads the rest)
  let body = await response.clone().text().catch((err) => `<unreadable: ${err}>`)
  if (body.length > 2000) body = body.slice(0, 2000) + `...`
  report({
    event: `response`,
    url,
    status: response.status,
    headers: Object.fromEntries(response.headers.entries()),
    body,
  })
  return response
}

const stream = new ShapeStream({
  // the client keeps query parameters of its URL: that is how it names a database
  url: `${base}/v1/shape/${table}` + (urlParams.toString() ? `?${urlParams}` : ``),
  where,
  columns,
  fetchClient: loggingFetch,
})
const shape = new Shape(stream)

shape.subscribe((rows) => {
  // first on stderr (as a marker, so a reader can order updates among the exchanges), then
  // the rows on stdout; both writes are synchronous for pipes
  report({ event: `update`, size: rows.size })
  process.stdout.write(toJson(Object.fromEntries(rows)) + `\n`)
})
stream.subscribe(() => {}, reportError)

process.on(`unhandledRejection`, reportError)
process.on(`uncaughtException`, reportError)

const stop = () => process.exit(0)
process.on(`SIGTERM`, stop)
process.on(`SIGINT`, stop)
process.stdin.on(`end`, stop)
process.stdin.on(`close`, stop)
process.stdin.resume()
