//! `udev/70-sentra.rules` against sample devices. Debian 12's udev (252) has no `udevadm verify`
//! and `udevadm test` needs the real device in /sys, so this is a small evaluator for the subset
//! of the rules language our rules use (`==`/`!=` on ACTION, SUBSYSTEM, KERNEL, ENV{}, and on
//! DRIVERS, ATTRS{}, SUBSYSTEMS, KERNELS all against one device of the parent chain; `=`/`+=`
//! on SYMLINK, GROUP, MODE, TAG, ENV{}; GOTO/LABEL): it refuses any other key or operator (so a typo fails
//! here), then runs each sample device's `add` event through the rules and compares the names,
//! groups and tags it gets. What it cannot show: that udev agrees on corners of the language we
//! do not use. udev/README.md says so too.

use std::collections::BTreeMap;
use std::path::PathBuf;

fn rules_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../udev/70-sentra.rules")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Assign,
    Add,
}

#[derive(Debug, Clone)]
struct Term {
    key: String,
    attr: Option<String>,
    op: Op,
    value: String,
}

#[derive(Debug)]
struct Rule {
    line: usize,
    terms: Vec<Term>,
}

/// Keys matched against the event's own device.
const DEVICE_KEYS: &[&str] = &["ACTION", "SUBSYSTEM", "KERNEL", "ENV"];
/// Keys matched against the device or one of its parents: all of a line's on the SAME device,
/// as udev does (so a line cannot take DRIVERS from the interface and ATTRS from the USB device).
const PARENT_KEYS: &[&str] = &["DRIVERS", "ATTRS", "SUBSYSTEMS", "KERNELS"];
const ASSIGN_KEYS: &[&str] = &["SYMLINK", "GROUP", "MODE", "TAG", "GOTO", "LABEL", "ENV"];

/// Parse the rules file; every problem is reported with its line number.
fn parse(text: &str) -> Result<Vec<Rule>, Vec<String>> {
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        match parse_line(l) {
            Ok(terms) => rules.push(Rule { line, terms }),
            Err(e) => errors.push(format!("line {line}: {e}: {l}")),
        }
    }
    let labels: Vec<&str> = rules
        .iter()
        .flat_map(|r| r.terms.iter())
        .filter(|t| t.key == "LABEL")
        .map(|t| t.value.as_str())
        .collect();
    for r in &rules {
        for t in r.terms.iter().filter(|t| t.key == "GOTO") {
            if !labels.contains(&t.value.as_str()) {
                errors.push(format!("line {}: GOTO {:?} has no LABEL", r.line, t.value));
            }
        }
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors)
    }
}

fn parse_line(mut s: &str) -> Result<Vec<Term>, String> {
    let mut terms = Vec::new();
    loop {
        s = s.trim_start();
        let key_end = s
            .find(|c: char| !(c.is_ascii_uppercase() || c == '_'))
            .ok_or("a key without operator")?;
        let key = &s[..key_end];
        s = &s[key_end..];
        let attr = if let Some(rest) = s.strip_prefix('{') {
            let end = rest.find('}').ok_or("unclosed {")?;
            let a = &rest[..end];
            s = &rest[end + 1..];
            Some(a.to_owned())
        } else {
            None
        };
        let (op, rest) = if let Some(r) = s.strip_prefix("==") {
            (Op::Eq, r)
        } else if let Some(r) = s.strip_prefix("!=") {
            (Op::Ne, r)
        } else if let Some(r) = s.strip_prefix("+=") {
            (Op::Add, r)
        } else if let Some(r) = s.strip_prefix('=') {
            (Op::Assign, r)
        } else {
            return Err(format!("key {key}: expected ==, !=, = or +="));
        };
        let rest = rest.strip_prefix('"').ok_or("value not in double quotes")?;
        let end = rest.find('"').ok_or("unclosed quote")?;
        let value = rest[..end].to_owned();
        s = &rest[end + 1..];
        let is_match = matches!(op, Op::Eq | Op::Ne);
        let known = if is_match {
            DEVICE_KEYS.contains(&key) || PARENT_KEYS.contains(&key)
        } else {
            ASSIGN_KEYS.contains(&key)
        };
        if !known {
            return Err(format!(
                "key {key} with {op:?} is not one this evaluator knows"
            ));
        }
        if matches!(key, "ATTRS" | "ENV") != attr.is_some() {
            return Err(format!("key {key}: attribute name misplaced"));
        }
        if value.is_empty() {
            return Err(format!("key {key}: empty value"));
        }
        terms.push(Term {
            key: key.to_owned(),
            attr,
            op,
            value,
        });
        s = s.trim_start();
        if s.is_empty() {
            return Ok(terms);
        }
        s = s
            .strip_prefix(',')
            .ok_or("terms must be separated by commas")?;
    }
}

/// udev's pattern match: `|` alternatives, each a shell glob with `*`, `?` and `[...]`.
fn pattern_matches(pattern: &str, value: &str) -> bool {
    pattern
        .split('|')
        .any(|alt| glob(alt.as_bytes(), value.as_bytes()))
}

fn glob(p: &[u8], v: &[u8]) -> bool {
    match p.first() {
        None => v.is_empty(),
        Some(b'*') => (0..=v.len()).any(|i| glob(&p[1..], &v[i..])),
        Some(b'?') => !v.is_empty() && glob(&p[1..], &v[1..]),
        Some(b'[') => {
            let Some(close) = p.iter().position(|&c| c == b']') else {
                return false;
            };
            let Some(&c) = v.first() else { return false };
            let set = &p[1..close];
            let mut hit = false;
            let mut i = 0;
            while i < set.len() {
                if i + 2 < set.len() && set[i + 1] == b'-' {
                    hit |= set[i] <= c && c <= set[i + 2];
                    i += 3;
                } else {
                    hit |= set[i] == c;
                    i += 1;
                }
            }
            hit && glob(&p[close + 1..], &v[1..])
        }
        Some(&c) => v.first() == Some(&c) && glob(&p[1..], &v[1..]),
    }
}

/// A device in sysfs as udev sees it: the event's device first, then its parents; `env` holds the
/// properties earlier rules files gave it (60-input-id.rules' `ID_INPUT_KEYBOARD`).
struct Device {
    what: &'static str,
    chain: Vec<Node>,
    env: &'static [(&'static str, &'static str)],
}

#[derive(Default)]
struct Node {
    subsystem: &'static str,
    kernel: &'static str,
    driver: &'static str,
    attrs: BTreeMap<&'static str, &'static str>,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Outcome {
    symlinks: Vec<String>,
    group: Option<String>,
    mode: Option<String>,
    tags: Vec<String>,
}

fn node_value<'a>(n: &'a Node, key: &str, attr: Option<&str>) -> Option<&'a str> {
    match key {
        "SUBSYSTEM" | "SUBSYSTEMS" => Some(n.subsystem),
        "KERNEL" | "KERNELS" => Some(n.kernel),
        "DRIVERS" => Some(n.driver),
        "ATTRS" => n.attrs.get(attr?).copied(),
        _ => None,
    }
}

fn term_holds(t: &Term, value: Option<&str>) -> bool {
    let m = value.is_some_and(|v| pattern_matches(&t.value, v));
    if t.op == Op::Eq { m } else { !m }
}

/// Run one `action` event for `dev` through `rules`.
fn evaluate(rules: &[Rule], dev: &Device, action: &str) -> Outcome {
    let mut out = Outcome::default();
    let mut env: BTreeMap<String, String> = dev
        .env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let mut skip_to: Option<String> = None;
    for r in rules {
        if let Some(label) = &skip_to {
            if r.terms
                .iter()
                .any(|t| t.key == "LABEL" && &t.value == label)
            {
                skip_to = None;
            }
            continue;
        }
        let own = &dev.chain[0];
        let device_ok = r
            .terms
            .iter()
            .filter(|t| DEVICE_KEYS.contains(&t.key.as_str()))
            .all(|t| {
                let v = match t.key.as_str() {
                    "ACTION" => Some(action),
                    "ENV" => t.attr.as_ref().and_then(|a| env.get(a)).map(String::as_str),
                    _ => node_value(own, &t.key, None),
                };
                term_holds(t, v)
            });
        let parent_terms: Vec<&Term> = r
            .terms
            .iter()
            .filter(|t| PARENT_KEYS.contains(&t.key.as_str()))
            .collect();
        let parents_ok = parent_terms.is_empty()
            || dev.chain.iter().any(|n| {
                parent_terms
                    .iter()
                    .all(|t| term_holds(t, node_value(n, &t.key, t.attr.as_deref())))
            });
        if !(device_ok && parents_ok) {
            continue;
        }
        for t in &r.terms {
            match (t.key.as_str(), t.op) {
                ("SYMLINK", Op::Add) => out.symlinks.push(t.value.clone()),
                ("SYMLINK", Op::Assign) => out.symlinks = vec![t.value.clone()],
                ("TAG", Op::Add) => out.tags.push(t.value.clone()),
                ("GROUP", _) => out.group = Some(t.value.clone()),
                ("MODE", _) => out.mode = Some(t.value.clone()),
                ("GOTO", _) => skip_to = Some(t.value.clone()),
                ("ENV", Op::Assign) => {
                    env.insert(t.attr.clone().expect("parsed"), t.value.clone());
                }
                _ => {}
            }
        }
    }
    out
}

fn usb(vendor: &'static str, product: &'static str) -> Node {
    Node {
        subsystem: "usb",
        kernel: "1-1",
        driver: "usb",
        attrs: BTreeMap::from([("idVendor", vendor), ("idProduct", product)]),
    }
}

fn tty_acm(what: &'static str, vendor: &'static str, product: &'static str) -> Device {
    Device {
        what,
        env: &[],
        chain: vec![
            Node {
                subsystem: "tty",
                kernel: "ttyACM0",
                ..Node::default()
            },
            Node {
                subsystem: "usb",
                kernel: "1-1:1.0",
                driver: "cdc_acm",
                ..Node::default()
            },
            usb(vendor, product),
        ],
    }
}

/// A USB printer on usblp: its printer-class interface carries the IEEE 1284 device ID.
fn usb_lp(
    what: &'static str,
    vendor: &'static str,
    product: &'static str,
    ieee1284_id: &'static str,
) -> Device {
    Device {
        what,
        env: &[],
        chain: vec![
            Node {
                subsystem: "usbmisc",
                kernel: "lp0",
                ..Node::default()
            },
            Node {
                subsystem: "usb",
                kernel: "1-2:1.0",
                driver: "usblp",
                attrs: BTreeMap::from([("bInterfaceClass", "07"), ("ieee1284_id", ieee1284_id)]),
            },
            usb(vendor, product),
        ],
    }
}

/// A USB keyboard's event node as udev's input_id builtin left it: `keyboard` sets
/// `ID_INPUT_KEYBOARD=1`; `name` is the input device's name (from the USB strings).
fn hid_event(
    what: &'static str,
    name: &'static str,
    vendor: &'static str,
    product: &'static str,
    keyboard: bool,
) -> Device {
    Device {
        what,
        env: if keyboard {
            &[("ID_INPUT", "1"), ("ID_INPUT_KEYBOARD", "1")]
        } else {
            &[("ID_INPUT", "1")]
        },
        chain: vec![
            Node {
                subsystem: "input",
                kernel: "event3",
                ..Node::default()
            },
            Node {
                subsystem: "input",
                kernel: "input17",
                attrs: BTreeMap::from([("name", name)]),
                ..Node::default()
            },
            Node {
                subsystem: "hid",
                kernel: "0003:0C2E:0B07.0001",
                driver: "hid-generic",
                ..Node::default()
            },
            Node {
                subsystem: "usb",
                kernel: "1-1:1.0",
                driver: "usbhid",
                attrs: BTreeMap::from([("bInterfaceClass", "03")]),
            },
            usb(vendor, product),
        ],
    }
}

const EPSON_ID: &str = "MFG:EPSON;CMD:ESC/POS;MDL:TM-T82X;CLS:PRINTER;DES:EPSON TM-T82X;";

fn expect(link: &str, group: &str) -> Outcome {
    Outcome {
        symlinks: vec![link.to_owned()],
        group: Some(group.to_owned()),
        mode: Some("0660".to_owned()),
        tags: vec!["systemd".to_owned()],
    }
}

fn load() -> Vec<Rule> {
    let text = std::fs::read_to_string(rules_path()).expect("read udev/70-sentra.rules");
    parse(&text).unwrap_or_else(|errors| panic!("udev/70-sentra.rules:\n{}", errors.join("\n")))
}

#[test]
fn rules_parse_and_every_goto_has_its_label() {
    let rules = load();
    assert!(rules.len() >= 12, "expected the scanner and printer rules");
    // The evaluator itself refuses what it does not know.
    assert!(parse(r#"SUBSYSTEM=="tty", SYMLNK+="x""#).is_err());
    assert!(parse(r#"SUBSYSTEM=="tty" SYMLINK+="x""#).is_err());
    assert!(parse(r#"SUBSYSTEM=="tty", SYMLINK+="x"#).is_err());
    assert!(parse(r#"GOTO="nowhere""#).is_err());
    assert!(parse(r#"ATTRS=="0c2e""#).is_err());
}

#[test]
fn glob_patterns_match_like_udev() {
    for (p, v, want) in [
        ("ttyACM[0-9]*", "ttyACM0", true),
        ("ttyACM[0-9]*", "ttyACM12", true),
        ("ttyACM[0-9]*", "ttyACMx", false),
        ("ttyACM[0-9]*", "ttyUSB0", false),
        ("0c2e|0536", "0536", true),
        ("0c2e|0536", "0c2f", false),
        ("lp?", "lp0", true),
        ("lp?", "lp", false),
    ] {
        assert_eq!(pattern_matches(p, v), want, "{p} vs {v}");
    }
}

#[test]
fn sample_devices_get_their_names_and_groups() {
    let rules = load();
    let cases = [
        (
            tty_acm("Honeywell Voyager 1250g, USB serial", "0c2e", "0b01"),
            expect("sentra/scanner", "dialout"),
        ),
        (
            tty_acm("Honeywell Xenon 1900 (Metrologic ID)", "0536", "02e1"),
            expect("sentra/scanner", "dialout"),
        ),
        (
            tty_acm("Zebra DS2208, USB CDC host", "05e0", "1701"),
            expect("sentra/scanner", "dialout"),
        ),
        (
            tty_acm("Datalogic QuickScan QD2430, USB-COM", "05f9", "4204"),
            expect("sentra/scanner", "dialout"),
        ),
        (
            usb_lp("Epson TM-T82X on usblp", "04b8", "0202", EPSON_ID),
            expect("sentra/printer", "lp"),
        ),
        (
            usb_lp(
                "Epson TM-T20II on usblp, a device ID without ESC/POS",
                "04b8",
                "0e15",
                "MFG:EPSON;MDL:TM-T20II;CLS:PRINTER;",
            ),
            expect("sentra/printer", "lp"),
        ),
        (
            tty_acm("Epson TM-T82X in USB serial mode", "04b8", "0e28"),
            expect("sentra/printer", "lp"),
        ),
        (
            tty_acm("a USB modem (Sierra) on cdc_acm", "1199", "9071"),
            Outcome::default(),
        ),
        (
            usb_lp(
                "Xprinter XP-58 (printer class, ESC/POS device ID)",
                "0483",
                "5743",
                "MFG:Xprinter;CMD:ESC/POS;MDL:XP-58;CLS:PRINTER;",
            ),
            expect("sentra/printer", "lp"),
        ),
        (
            usb_lp(
                "Zjiang ZJ-5890 (printer class, ESCPOS)",
                "0416",
                "5011",
                "MFG:ZJ;CMD:ESCPOS;MDL:ZJ-5890K;CLS:PRINTER;",
            ),
            expect("sentra/printer", "lp"),
        ),
        (
            hid_event(
                "Honeywell Voyager 1250g in keyboard mode",
                "Honeywell Imaging & Mobility 1250g",
                "0c2e",
                "0b07",
                true,
            ),
            expect("sentra-scanner-hid", "dialout"),
        ),
        (
            hid_event(
                "Newland HR22 in keyboard mode",
                "Newland Auto-ID HR22",
                "1eab",
                "1d22",
                true,
            ),
            expect("sentra-scanner-hid", "dialout"),
        ),
        (
            hid_event(
                "an unbranded scanner named for what it is",
                "USB Barcode Scanner Keyboard",
                "1a86",
                "e026",
                true,
            ),
            expect("sentra-scanner-hid", "dialout"),
        ),
        (
            hid_event(
                "another unbranded one",
                "SCANNER HID KBW",
                "0483",
                "0011",
                true,
            ),
            expect("sentra-scanner-hid", "dialout"),
        ),
        // Look-alikes that must keep their own names.
        (
            usb_lp(
                "an office printer (HP LaserJet): printer class, not ESC/POS",
                "03f0",
                "0517",
                "MFG:Hewlett-Packard;CMD:PJL,PML,PCLXL,POSTSCRIPT,PCL;MDL:HP LaserJet P2015;CLS:PRINTER;",
            ),
            Outcome::default(),
        ),
        (
            hid_event(
                "the cashier's real keyboard",
                "Logitech USB Keyboard",
                "046d",
                "c31c",
                true,
            ),
            Outcome::default(),
        ),
        (
            hid_event(
                "a Honeywell scanner's second node (not a keyboard: its consumer keys)",
                "Honeywell Imaging & Mobility 1250g Consumer Control",
                "0c2e",
                "0b07",
                false,
            ),
            Outcome::default(),
        ),
        (
            hid_event(
                "a mouse named Scanner Pro (not a keyboard)",
                "Scanner Pro Mouse",
                "1a86",
                "e027",
                false,
            ),
            Outcome::default(),
        ),
        (
            Device {
                what: "FTDI USB-serial cable (ttyUSB, ftdi_sio)",
                env: &[],
                chain: vec![
                    Node {
                        subsystem: "tty",
                        kernel: "ttyUSB0",
                        ..Node::default()
                    },
                    Node {
                        subsystem: "usb-serial",
                        kernel: "ttyUSB0",
                        driver: "ftdi_sio",
                        ..Node::default()
                    },
                    usb("0403", "6001"),
                ],
            },
            Outcome::default(),
        ),
        (
            Device {
                what: "Honeywell scanner's input device itself (not its event node)",
                env: &[("ID_INPUT", "1"), ("ID_INPUT_KEYBOARD", "1")],
                chain: vec![
                    Node {
                        subsystem: "input",
                        kernel: "input17",
                        ..Node::default()
                    },
                    Node {
                        subsystem: "usb",
                        kernel: "1-1:1.0",
                        driver: "usbhid",
                        ..Node::default()
                    },
                    usb("0c2e", "0b07"),
                ],
            },
            Outcome::default(),
        ),
        (
            Device {
                what: "Zebra vendor ID on a tty that is not cdc_acm",
                env: &[],
                chain: vec![
                    Node {
                        subsystem: "tty",
                        kernel: "ttyACM1",
                        ..Node::default()
                    },
                    Node {
                        subsystem: "usb",
                        kernel: "1-1:1.0",
                        driver: "usb_serial_simple",
                        ..Node::default()
                    },
                    usb("05e0", "1701"),
                ],
            },
            Outcome::default(),
        ),
    ];
    let mut wrong = Vec::new();
    for (dev, want) in &cases {
        let got = evaluate(&rules, dev, "add");
        if &got != want {
            wrong.push(format!("{}: got {got:?}, want {want:?}", dev.what));
        }
        // Removal events skip every rule (GOTO sentra_end).
        let removed = evaluate(&rules, dev, "remove");
        if removed != Outcome::default() {
            wrong.push(format!("{} (remove): got {removed:?}", dev.what));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    eprintln!(
        "udev: {} sample devices evaluated against {} rule lines",
        cases.len(),
        rules.len()
    );
}

#[test]
fn parent_keys_of_one_line_must_match_one_device() {
    // The mistake the first line of our rules avoids: the driver is on the USB interface, the
    // vendor on the USB device, so udev never matches both in one line.
    let one_line = parse(
        r#"SUBSYSTEM=="tty", DRIVERS=="cdc_acm", ATTRS{idVendor}=="0c2e", SYMLINK+="sentra/scanner""#,
    )
    .expect("parses");
    let dev = tty_acm("Honeywell, serial", "0c2e", "0b01");
    assert_eq!(evaluate(&one_line, &dev, "add"), Outcome::default());
    let two_lines = parse(
        "SUBSYSTEM==\"tty\", DRIVERS==\"cdc_acm\", ENV{A}=\"1\"\n\
         SUBSYSTEM==\"tty\", ENV{A}==\"1\", ATTRS{idVendor}==\"0c2e\", SYMLINK+=\"sentra/scanner\"",
    )
    .expect("parses");
    assert_eq!(
        evaluate(&two_lines, &dev, "add").symlinks,
        vec!["sentra/scanner".to_owned()]
    );
}
