//! Entry points for the fuzz targets and their regression tests; not a stable API.
//!
//! Each entry point takes the fuzzer's bytes, runs the real parsing code on them and asserts
//! the invariants that must hold: it panics exactly when the fuzz target should report a
//! crash. The fuzz targets (`fuzz/fuzz_targets/`) and the replay tests (which feed them every
//! file of `fuzz/seeds/TARGET/` and `fuzz/regressions/TARGET/`) call the same functions, so
//! the two cannot drift apart.

use bytes::Bytes;
use http::header;
use http::StatusCode;
use prost_reflect::{DescriptorPool, MessageDescriptor};
use std::str::FromStr;
use std::sync::Arc;

use wafer_registry::{Deployment, FunctionConfig, FunctionName, Route};

use crate::cgi::{parse_output, Output};
use crate::live::{Function, RouteTable};
use crate::schema::{compile_proto, json_to_protobuf, protobuf_to_json};

/// The most bytes an error about guest output may have: it quotes an excerpt, never the
/// output itself (an escaped 200-byte excerpt is at most 1,200 bytes).
const MAX_ERROR: usize = 2048;

/// `cgi_output`: parses the input as a CGI guest's stdout. It never panics; an error is short
/// whatever the input; a plain (header-less) output is the whole input as `text/plain`; a
/// header block has a final status, no hop-by-hop headers, a body that is the end of the
/// input, and reads back the same when written out again.
pub fn cgi_output(data: &[u8]) {
    let stdout = Bytes::copy_from_slice(data);
    let output = match parse_output(stdout.clone()) {
        Ok(output) => output,
        Err(e) => {
            assert!(e.len() <= MAX_ERROR, "a {}-byte error message", e.len());
            return;
        }
    };
    if !output.has_headers {
        assert_eq!(output.status, StatusCode::OK);
        assert_eq!(
            output.body, stdout,
            "plain output is not the whole of stdout"
        );
        assert_eq!(output.headers.len(), 1);
        assert_eq!(output.headers[0].0, header::CONTENT_TYPE);
        return;
    }
    check_header_block(&output, data);
    // Written out again, the block must read back as the same response.
    let mut again = format!("Status: {}\r\n", output.status.as_u16()).into_bytes();
    for (name, value) in &output.headers {
        again.extend_from_slice(name.as_str().as_bytes());
        again.extend_from_slice(b": ");
        again.extend_from_slice(value.as_bytes());
        again.extend_from_slice(b"\r\n");
    }
    again.extend_from_slice(b"\r\n");
    again.extend_from_slice(&output.body);
    let reread = parse_output(Bytes::from(again.clone()))
        .unwrap_or_else(|e| panic!("{:?} written out again does not parse: {e}", again));
    assert!(
        reread.has_headers,
        "written out again, the block is not CGI"
    );
    assert_eq!(reread.status, output.status);
    assert_eq!(reread.headers, output.headers);
    assert_eq!(reread.body, output.body);
}

fn check_header_block(output: &Output, data: &[u8]) {
    let code = output.status.as_u16();
    assert!((200..=599).contains(&code), "status {code} is not final");
    assert!(
        data.ends_with(&output.body),
        "the body is not the end of stdout"
    );
    for (name, _) in &output.headers {
        assert!(
            !crate::cgi::is_hop_by_hop(name),
            "hop-by-hop header `{name}` passed through"
        );
        assert_ne!(
            name.as_str(),
            "status",
            "`Status` passed through as a header"
        );
    }
    let location = output.headers.iter().any(|(n, _)| n == header::LOCATION);
    let content_type = output
        .headers
        .iter()
        .any(|(n, _)| n == header::CONTENT_TYPE);
    let has_status = data
        .split(|&b| b == b'\n')
        .take_while(|line| !line.is_empty() && *line != b"\r")
        .any(|line| line.len() > 7 && line[..7].eq_ignore_ascii_case(b"status:"));
    assert!(
        location || content_type || has_status,
        "a CGI header block without Content-Type, Location or Status"
    );
    if location && !has_status {
        assert_eq!(output.status, StatusCode::FOUND);
    }
}

/// `admin_query`: parses the input as the query string of a deploy (`PUT
/// /_wafer/functions/NAME?...`). A deploy configuration
/// that parses must survive the JSON round trip of the stored record, and every operation
/// has a name and both types.
pub fn admin_query(data: &[u8]) {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((config, operations)) = crate::deploy::deploy_config(query) {
        let json = serde_json::to_string(&config).expect("a config serializes");
        let stored: FunctionConfig = serde_json::from_str(&json)
            .unwrap_or_else(|e| panic!("the stored config {json} does not load: {e}"));
        assert_eq!(
            stored, config,
            "the deploy configuration changes when stored and loaded (as {json})"
        );
        for (name, types) in &operations {
            assert!(!name.is_empty() && !types.input.is_empty() && !types.output.is_empty());
        }
    }
}

/// The message types `protobuf_transcode` uses, from one `.proto`.
pub struct Transcoder {
    pair: MessageDescriptor,
    complex: MessageDescriptor,
}

impl Transcoder {
    /// Compiles `proto` (the complex-number example's `complex.proto`) with the gateway's own
    /// compiler and finds its messages `complex.Pair` and `complex.Complex`.
    pub fn new(proto: &str) -> Self {
        let descriptors = compile_proto(proto).expect("the .proto compiles");
        let pool = DescriptorPool::decode(descriptors.as_slice()).expect("the descriptors load");
        let message = |name: &str| {
            pool.get_message_by_name(name)
                .unwrap_or_else(|| panic!("no message {name}"))
        };
        Self {
            pair: message("complex.Pair"),
            complex: message("complex.Complex"),
        }
    }

    /// `protobuf_transcode`: an input starting with `C` is for `complex.Complex`, else for
    /// `complex.Pair` (a leading `P` is dropped). The rest is transcoded both ways: as JSON
    /// to protobuf and, when that succeeds, back to JSON, which must transcode to the same
    /// protobuf; and as a guest's protobuf answer to JSON, which must be accepted back.
    pub fn check(&self, data: &[u8]) {
        let (message, rest) = match data.split_first() {
            Some((b'C', rest)) => (&self.complex, rest),
            Some((b'P', rest)) => (&self.pair, rest),
            _ => (&self.pair, data),
        };
        if let Ok(encoded) = json_to_protobuf(message, rest) {
            let json = protobuf_to_json(message, &encoded)
                .unwrap_or_else(|e| panic!("our own encoding does not decode: {e}"));
            let again = json_to_protobuf(message, &json).unwrap_or_else(|e| {
                panic!(
                    "our JSON {:?} is refused: {e}",
                    String::from_utf8_lossy(&json)
                )
            });
            assert_eq!(
                again, encoded,
                "JSON -> protobuf -> JSON -> protobuf changed"
            );
        }
        if let Ok(json) = protobuf_to_json(message, rest) {
            assert!(json.ends_with(b"\n"));
            if let Err(e) = json_to_protobuf(message, &json) {
                panic!(
                    "the JSON of a guest's answer, {:?}, is refused: {e}",
                    String::from_utf8_lossy(&json)
                );
            }
        }
    }
}

/// `names_routes`: the registry's checks of names, routes and grants
/// (`wafer_registry::fuzzing::names_routes`), then the lines that are routes go into a route
/// table (spread over three functions), and every line is resolved as a request path,
/// checked against a plain model of the matching rules.
pub fn names_routes(data: &[u8]) {
    let (routes, lines) = wafer_registry::fuzzing::names_routes(data);
    // The model knows literal routes; parameters (`:name`) are tested by the table's own
    // tests.
    let routes: Vec<Route> = routes.into_iter().filter(|r| !r.has_params()).collect();
    check_route_table(&routes, &lines);
}

/// Builds a route table from `routes` (route `i` goes to function `f{i % 3}`) and checks
/// each line resolved as a path against [`resolve_model`].
fn check_route_table(routes: &[Route], lines: &[String]) {
    let names: Vec<FunctionName> = (0..3)
        .map(|i| FunctionName::from_str(&format!("f{i}")).expect("a valid name"))
        .collect();
    let mut configs = vec![FunctionConfig::default(); 3];
    for (i, route) in routes.iter().enumerate() {
        configs[i % 3].routes.push(route.clone());
    }
    let functions: Vec<Arc<Function>> = names
        .iter()
        .zip(configs)
        .map(|(name, config)| {
            let deployment = Deployment::of(name.clone(), config);
            Arc::new(Function::new(
                deployment,
                Err("a fuzzing stand-in".into()),
                None,
            ))
        })
        .collect();
    // Which function holds each pattern last, in the order the table is built.
    let mut owners: Vec<((String, bool), usize, usize)> = Vec::new();
    let mut taken = false;
    for (f, function) in functions.iter().enumerate() {
        for (index, route) in function.config.routes.iter().enumerate() {
            let (prefix, wildcard) = route.pattern();
            let key = (prefix.to_owned(), wildcard);
            if let Some(owner) = owners.iter_mut().find(|(k, _, _)| *k == key) {
                taken |= owner.1 != f;
                *owner = (key, f, index);
            } else {
                owners.push((key, f, index));
            }
        }
    }
    let table = match RouteTable::build(functions.iter()) {
        Ok(table) => table,
        Err(e) => {
            assert!(
                taken,
                "the route table refused routes no two functions share: {e}"
            );
            return;
        }
    };
    assert!(!taken, "the route table took one route for two functions");
    let mut paths: Vec<String> = lines.to_vec();
    for route in routes {
        let (prefix, _) = route.pattern();
        paths.push(prefix.to_owned());
        paths.push(format!("{prefix}/x"));
        paths.push(format!("{prefix}x"));
    }
    for path in &paths {
        let got = table
            .resolve(path)
            .map(|r| (r.function.name.to_string(), r.route, r.script_name_len));
        let expected =
            resolve_model(&owners, path).map(|(f, index, len)| (names[f].to_string(), index, len));
        assert_eq!(got, expected, "resolving {path:?}");
        if let Some((_, _, len)) = got {
            assert!(path.is_char_boundary(len), "SCRIPT_NAME splits a character");
        }
    }
}

/// The matching rules, plainly: an exact route for exactly its path, else the longest
/// wildcard prefix the path equals or continues with `/`; `/...` (empty prefix) matches
/// every path.
fn resolve_model(
    owners: &[((String, bool), usize, usize)],
    path: &str,
) -> Option<(usize, usize, usize)> {
    if let Some((_, f, index)) = owners.iter().find(|((p, w), _, _)| !*w && p == path) {
        return Some((*f, *index, path.len()));
    }
    owners
        .iter()
        .filter(|((p, w), _, _)| {
            *w && (p.is_empty()
                || (path.starts_with(p.as_str())
                    && (path.len() == p.len() || path.as_bytes()[p.len()] == b'/')))
        })
        .max_by_key(|((p, _), _, _)| p.len())
        .map(|((p, _), f, index)| (*f, *index, p.len()))
}
