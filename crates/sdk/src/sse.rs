//! A small, incremental parser for `text/event-stream` (the WHATWG
//! server-sent events format): fed arbitrary byte chunks, it yields
//! complete events. Handles LF, CRLF and CR line ends, a leading BOM,
//! comments (heartbeats), multi-line `data`, `id` and `retry`.

/// One dispatched event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// `event:` field; `message` when absent.
    pub event: String,
    /// `data:` lines joined with `\n`.
    pub data: String,
    /// The last event id seen on the stream so far (sticky, per the spec).
    pub id: Option<String>,
}

/// Parser state between chunks.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    /// Bytes of an incomplete line.
    line: Vec<u8>,
    /// Whether the previous chunk ended in `\r` (a `\n` right after it
    /// belongs to the same line end).
    after_cr: bool,
    started: bool,
    event: String,
    data: String,
    has_data: bool,
    last_id: Option<String>,
    /// The last `retry:` value in milliseconds.
    pub retry_ms: Option<u64>,
}

/// Upper bound on one line: a stream that never ends a line is cut off
/// rather than buffered without bound (snapshots are far smaller).
const MAX_LINE: usize = 64 * 1024 * 1024;

/// Why the parser gave up.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct LineTooLong;

impl SseParser {
    /// Feeds a chunk; complete events are pushed onto `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), LineTooLong> {
        for &b in chunk {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    self.line_done(&line, out);
                    self.line = line;
                    self.line.clear();
                }
                _ => {
                    self.after_cr = false;
                    if self.line.len() >= MAX_LINE {
                        return Err(LineTooLong);
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(())
    }

    fn line_done(&mut self, raw: &[u8], out: &mut Vec<SseEvent>) {
        let mut line = String::from_utf8_lossy(raw);
        if !self.started {
            self.started = true;
            if let Some(rest) = line.strip_prefix('\u{feff}') {
                line = rest.to_owned().into();
            }
        }
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line.starts_with(':') {
            return; // A comment: the server's heartbeat.
        }
        let (field, value) = match line.find(':') {
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(' ').unwrap_or(value))
            }
            None => (&*line, ""),
        };
        match field {
            "event" => self.event = value.to_owned(),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.last_id = Some(value.to_owned()),
            "retry" => {
                if let Ok(ms) = value.parse() {
                    self.retry_ms = Some(ms);
                }
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event = std::mem::take(&mut self.event);
        let data = std::mem::take(&mut self.data);
        if !std::mem::take(&mut self.has_data) {
            return;
        }
        out.push(SseEvent {
            event: if event.is_empty() { "message".to_owned() } else { event },
            data,
            id: self.last_id.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_chunks(chunks: &[&[u8]]) -> (Vec<SseEvent>, SseParser) {
        let mut parser = SseParser::default();
        let mut out = Vec::new();
        for chunk in chunks {
            parser.feed(chunk, &mut out).unwrap();
        }
        (out, parser)
    }

    fn ev(event: &str, data: &str, id: Option<&str>) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.into(),
            id: id.map(Into::into),
        }
    }

    #[test]
    fn parses_named_events_with_ids() {
        let (events, _) =
            parse_chunks(&[b"event: snapshot\nid: 3\ndata: {\"a\":1}\n\nevent: change\nid: 4\ndata: x\n\n"]);
        assert_eq!(
            events,
            [ev("snapshot", "{\"a\":1}", Some("3")), ev("change", "x", Some("4"))]
        );
    }

    #[test]
    fn events_split_across_chunks_at_any_byte_are_reassembled() {
        let text = b"event: change\r\nid: 7\r\ndata: one\r\ndata: two\r\n\r\n";
        for split in 0..text.len() {
            let (events, _) = parse_chunks(&[&text[..split], &text[split..]]);
            assert_eq!(events, [ev("change", "one\ntwo", Some("7"))], "split at {split}");
        }
    }

    #[test]
    fn comments_are_heartbeats_and_dispatch_nothing() {
        let (events, _) = parse_chunks(&[b":\n\n: keep-alive\n\n"]);
        assert!(events.is_empty());
    }

    #[test]
    fn cr_only_line_ends_bom_and_fields_without_colon_are_handled() {
        let (events, parser) = parse_chunks(&[b"\xEF\xBB\xBFdata\rretry: 1500\r\r"]);
        assert_eq!(events, [ev("message", "", None)]);
        assert_eq!(parser.retry_ms, Some(1500));
    }

    #[test]
    fn an_event_without_data_is_not_dispatched_and_ids_are_sticky() {
        let (events, _) = parse_chunks(&[b"id: 9\nevent: change\n\ndata: later\n\n"]);
        assert_eq!(events, [ev("message", "later", Some("9"))]);
    }

    #[test]
    fn an_unfinished_event_at_end_of_stream_is_not_dispatched() {
        let (events, _) = parse_chunks(&[b"event: change\ndata: partial"]);
        assert!(events.is_empty());
    }
}
