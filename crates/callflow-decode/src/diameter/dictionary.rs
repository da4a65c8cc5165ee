//! The Diameter dictionary as data: application, command and AVP names and AVP types, read from a TOML file, built in and extendable at run time.
//!
//! The built-in dictionary (`data/diameter-dictionary.toml`, embedded at build time)
//! covers the base protocol (RFC 6733), credit control (RFC 4006, TS 32.299: Gy/Ro),
//! Gx (TS 29.212), Rx (TS 29.214), Cx/Dx (TS 29.228/229), Sh (TS 29.328/329),
//! S6a/S6d (TS 29.272) and SWx (TS 29.273). A file in the same format extends it
//! ([`Dictionary::extend_from_str`], [`Dictionary::with_file`]): its entries are added,
//! and an entry with the code (and vendor, or application) of an existing one replaces it.
//!
//! The format, one array of tables per kind of entry:
//!
//! ```toml
//! [[vendor]]
//! id = 10415
//! name = "3GPP"
//!
//! [[application]]
//! id = 16777238
//! name = "Gx"                      # short, for summaries such as `CCR-I (Gx)`
//! long_name = "3GPP Gx"
//!
//! [[command]]
//! code = 272
//! name = "Credit-Control"
//! request = "CCR"
//! answer = "CCA"
//! # application = 16777238         # only when the names differ in one application
//!
//! [[avp]]
//! code = 416
//! name = "CC-Request-Type"
//! type = "Enumerated"
//! # vendor = 10415                 # absent or 0: an IETF AVP
//! values = [[1, "INITIAL_REQUEST"], [2, "UPDATE_REQUEST"]]
//! ```
//!
//! A file with a mistake (bad TOML, an unknown type, a missing field, an entry defined
//! twice in the same file, values on a type that has none) is a [`DictionaryError`]
//! naming the file, the line and what is wrong. AVPs the dictionary does not know are
//! no error anywhere: they are shown by code and vendor, with their data in hex.

use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::OnceLock;

/// The built-in dictionary's text.
pub const BUILTIN: &str = include_str!("../../data/diameter-dictionary.toml");

/// The data type of an AVP (RFC 6733 section 4.2-4.3, and RFC 4006's additions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[non_exhaustive]
pub enum AvpType {
    /// Arbitrary bytes.
    OctetString,
    /// A signed 32-bit integer.
    Integer32,
    /// A signed 64-bit integer.
    Integer64,
    /// An unsigned 32-bit integer.
    Unsigned32,
    /// An unsigned 64-bit integer.
    Unsigned64,
    /// An IEEE 754 single-precision number.
    Float32,
    /// An IEEE 754 double-precision number.
    Float64,
    /// A sequence of AVPs.
    Grouped,
    /// An address family (2 bytes) and an address.
    Address,
    /// Seconds since 1900-01-01 UTC (NTP's epoch), 4 bytes.
    Time,
    /// UTF-8 text.
    #[serde(rename = "UTF8String")]
    Utf8String,
    /// A host or realm name.
    DiameterIdentity,
    /// A `aaa://` or `aaas://` URI.
    #[serde(rename = "DiameterURI")]
    DiameterUri,
    /// An Integer32 with named values.
    Enumerated,
    /// An IP filter rule (text).
    #[serde(rename = "IPFilterRule")]
    IpFilterRule,
    /// A QoS filter rule (text).
    #[serde(rename = "QoSFilterRule")]
    QosFilterRule,
}

impl AvpType {
    /// Whether the data is text.
    pub fn is_text(self) -> bool {
        matches!(
            self,
            AvpType::Utf8String
                | AvpType::DiameterIdentity
                | AvpType::DiameterUri
                | AvpType::IpFilterRule
                | AvpType::QosFilterRule
        )
    }

    /// Whether named values make sense for the type (integers).
    fn takes_values(self) -> bool {
        matches!(
            self,
            AvpType::Enumerated | AvpType::Integer32 | AvpType::Unsigned32 | AvpType::Integer64 | AvpType::Unsigned64
        )
    }
}

/// An application: its id and names.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Application {
    /// The application id of the header.
    pub id: u32,
    /// A short name for summaries (`Gx`, `S6a`).
    pub name: String,
    /// The full name (`3GPP Gx`).
    #[serde(default)]
    pub long_name: String,
}

/// A command: its code and names.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Command {
    /// The command code.
    pub code: u32,
    /// The full name (`Credit-Control`).
    pub name: String,
    /// The request's abbreviation (`CCR`).
    pub request: String,
    /// The answer's abbreviation (`CCA`).
    pub answer: String,
    /// The application these names are for, when they are not the same in every one.
    #[serde(default)]
    pub application: Option<u32>,
}

/// An AVP's definition.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AvpDef {
    /// The AVP code.
    pub code: u32,
    /// The vendor id (0 for an IETF AVP).
    #[serde(default)]
    pub vendor: u32,
    /// The AVP's name (`Session-Id`).
    pub name: String,
    /// Its data type.
    #[serde(rename = "type")]
    pub avp_type: AvpType,
    /// Names of the values of an Enumerated (or integer) AVP.
    #[serde(default)]
    pub values: Vec<(i64, String)>,
}

impl AvpDef {
    /// The name of `value`, if the dictionary gives one.
    pub fn value_name(&self, value: i64) -> Option<&str> {
        self.values.iter().find(|(v, _)| *v == value).map(|(_, name)| name.as_str())
    }
}

/// A vendor: its id and name.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Vendor {
    id: u32,
    name: String,
}

/// A dictionary file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    vendor: Vec<toml::Spanned<Vendor>>,
    #[serde(default)]
    application: Vec<toml::Spanned<Application>>,
    #[serde(default)]
    command: Vec<toml::Spanned<Command>>,
    #[serde(default)]
    avp: Vec<toml::Spanned<AvpDef>>,
}

/// A dictionary file that could not be used: where, and why.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DictionaryError {
    /// The file could not be read.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The file could be read, but something in it is wrong.
    #[error("{file}:{line}: {message}")]
    Invalid {
        /// The file (or the name given to a text).
        file: String,
        /// The 1-based line of the mistake.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// Application, command and AVP names and types; see the module documentation.
#[derive(Clone, Debug, Default)]
pub struct Dictionary {
    vendors: HashMap<u32, String>,
    applications: HashMap<u32, Application>,
    /// By code and application (`None`: any application).
    commands: HashMap<(u32, Option<u32>), Command>,
    /// By code and vendor (0 for IETF).
    avps: HashMap<(u32, u32), AvpDef>,
}

impl Dictionary {
    /// The built-in dictionary, parsed once.
    pub fn builtin() -> &'static Dictionary {
        static BUILT: OnceLock<Dictionary> = OnceLock::new();
        BUILT.get_or_init(|| {
            let mut dict = Dictionary::default();
            // The built-in file is checked by this module's tests; an error here cannot ship.
            if let Err(e) = dict.extend_from_str(BUILTIN, "built-in diameter-dictionary.toml") {
                debug_assert!(false, "{e}");
            }
            dict
        })
    }

    /// The built-in dictionary extended (or overridden) by the file at `path`.
    pub fn with_file(path: &Path) -> Result<Dictionary, DictionaryError> {
        let file = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|source| DictionaryError::Io { file: file.clone(), source })?;
        let mut dict = Dictionary::builtin().clone();
        dict.extend_from_str(&text, &file)?;
        Ok(dict)
    }

    /// Adds the entries of a dictionary text (named `file` in errors); an entry with the
    /// key of an existing one replaces it. On error nothing is added.
    pub fn extend_from_str(&mut self, text: &str, file: &str) -> Result<(), DictionaryError> {
        let line_of = |offset: usize| text.get(..offset).map_or(1, |t| t.bytes().filter(|&b| b == b'\n').count() + 1);
        let invalid = |offset: usize, message: String| DictionaryError::Invalid {
            file: file.to_string(),
            line: line_of(offset),
            message,
        };
        let parsed: File = toml::from_str(text)
            .map_err(|e| invalid(e.span().map_or(0, |s| s.start), e.message().trim().to_string()))?;
        let mut add = Dictionary::default();
        // Duplicates within one file are mistakes; across files they are overrides.
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut check = |key: String, offset: usize| match seen.insert(key.clone(), offset) {
            Some(first) => Err(invalid(offset, format!("{key} is defined twice (first at line {})", line_of(first)))),
            None => Ok(()),
        };
        for v in parsed.vendor {
            let at = v.span().start;
            let v = v.into_inner();
            check(format!("vendor {}", v.id), at)?;
            nonempty(&v.name, "vendor name").map_err(|m| invalid(at, m))?;
            add.vendors.insert(v.id, v.name);
        }
        for a in parsed.application {
            let at = a.span().start;
            let a = a.into_inner();
            check(format!("application {}", a.id), at)?;
            nonempty(&a.name, "application name").map_err(|m| invalid(at, m))?;
            add.applications.insert(a.id, a);
        }
        for c in parsed.command {
            let at = c.span().start;
            let c = c.into_inner();
            let scope = c.application.map_or(String::new(), |a| format!(" of application {a}"));
            check(format!("command {}{scope}", c.code), at)?;
            for (field, value) in [("command name", &c.name), ("request", &c.request), ("answer", &c.answer)] {
                nonempty(value, field).map_err(|m| invalid(at, m))?;
            }
            add.commands.insert((c.code, c.application), c);
        }
        for a in parsed.avp {
            let at = a.span().start;
            let a = a.into_inner();
            check(format!("AVP {} of vendor {}", a.code, a.vendor), at)?;
            nonempty(&a.name, "AVP name").map_err(|m| invalid(at, m))?;
            if !a.values.is_empty() && !a.avp_type.takes_values() {
                return Err(invalid(
                    at,
                    format!("AVP {} ({}): values given for a {:?}, which has none", a.code, a.name, a.avp_type),
                ));
            }
            add.avps.insert((a.code, a.vendor), a);
        }
        self.vendors.extend(add.vendors);
        self.applications.extend(add.applications);
        self.commands.extend(add.commands);
        self.avps.extend(add.avps);
        Ok(())
    }

    /// The application with this id.
    pub fn application(&self, id: u32) -> Option<&Application> {
        self.applications.get(&id)
    }

    /// The command with this code, as named in `application` (or in any).
    pub fn command(&self, code: u32, application: u32) -> Option<&Command> {
        self.commands.get(&(code, Some(application))).or_else(|| self.commands.get(&(code, None)))
    }

    /// The AVP with this code and vendor (`None` or `Some(0)`: IETF).
    pub fn avp(&self, code: u32, vendor: Option<u32>) -> Option<&AvpDef> {
        self.avps.get(&(code, vendor.unwrap_or(0)))
    }

    /// Whether the AVP is Grouped.
    pub fn is_grouped(&self, code: u32, vendor: Option<u32>) -> bool {
        self.avp(code, vendor).is_some_and(|a| a.avp_type == AvpType::Grouped)
    }

    /// The vendor's name (`3GPP` for 10415).
    pub fn vendor(&self, id: u32) -> Option<&str> {
        self.vendors.get(&id).map(String::as_str)
    }

    /// How many AVPs the dictionary defines.
    pub fn avp_count(&self) -> usize {
        self.avps.len()
    }
}

fn nonempty(value: &str, what: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        Err(format!("{what} is empty"))
    } else {
        Ok(())
    }
}

impl fmt::Display for AvpType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The class of a Result-Code (RFC 6733 section 7.1): its thousands digit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResultClass {
    /// 1xxx: more is needed (multi-round authentication).
    Informational,
    /// 2xxx: the request was done.
    Success,
    /// 3xxx: a protocol error, on a hop (routing, capabilities).
    ProtocolError,
    /// 4xxx: the request failed this time, and may succeed later.
    TransientFailure,
    /// 5xxx: the request failed and will fail again.
    PermanentFailure,
    /// Any other value.
    Unknown,
}

impl ResultClass {
    /// The class of `code`.
    pub fn of(code: u32) -> ResultClass {
        match code / 1000 {
            1 => ResultClass::Informational,
            2 => ResultClass::Success,
            3 => ResultClass::ProtocolError,
            4 => ResultClass::TransientFailure,
            5 => ResultClass::PermanentFailure,
            _ => ResultClass::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(text: &str) -> String {
        Dictionary::default().extend_from_str(text, "ext.toml").unwrap_err().to_string()
    }

    #[test]
    fn the_builtin_dictionary_parses_and_names_the_usual_suspects() {
        let mut dict = Dictionary::default();
        dict.extend_from_str(BUILTIN, "builtin").expect("the built-in dictionary is valid");
        let d = Dictionary::builtin();
        assert!(d.avp_count() > 300, "{} AVPs", d.avp_count());
        let name = |code, vendor| d.avp(code, vendor).map(|a| a.name.as_str());
        assert_eq!(name(263, None), Some("Session-Id"));
        assert_eq!(name(268, Some(0)), Some("Result-Code"));
        assert_eq!(name(443, None), Some("Subscription-Id"));
        assert_eq!(name(1001, Some(10415)), Some("Charging-Rule-Install"));
        assert_eq!(name(505, Some(10415)), Some("AF-Charging-Identifier"));
        assert_eq!(name(601, Some(10415)), Some("Public-Identity"));
        assert_eq!(name(1400, Some(10415)), Some("Subscription-Data"));
        assert_eq!(name(1001, None), None, "vendor matters");
        assert!(d.is_grouped(1001, Some(10415)));
        assert!(!d.is_grouped(263, None));
        assert_eq!(d.avp(416, None).and_then(|a| a.value_name(3)), Some("TERMINATION_REQUEST"));
        assert_eq!(d.avp(450, None).and_then(|a| a.value_name(1)), Some("END_USER_IMSI"));
        assert_eq!(d.avp(268, None).and_then(|a| a.value_name(5001)), Some("DIAMETER_AVP_UNSUPPORTED"));
        let app = |id| d.application(id).map(|a| a.name.as_str());
        assert_eq!(
            [app(0), app(4), app(16777238), app(16777236), app(16777216), app(16777217), app(16777251), app(16777265)],
            [Some("Base"), Some("Gy"), Some("Gx"), Some("Rx"), Some("Cx"), Some("Sh"), Some("S6a"), Some("SWx")]
        );
        let cmd = |code, app| d.command(code, app).map(|c| (c.request.as_str(), c.answer.as_str()));
        assert_eq!(cmd(272, 4), Some(("CCR", "CCA")));
        assert_eq!(cmd(316, 16777251), Some(("ULR", "ULA")));
        assert_eq!(cmd(303, 16777265), Some(("MAR", "MAA")));
        assert_eq!(cmd(280, 0), Some(("DWR", "DWA")));
        assert_eq!(d.vendor(10415), Some("3GPP"));
    }

    #[test]
    fn an_extension_adds_and_overrides() {
        let mut d = Dictionary::builtin().clone();
        d.extend_from_str(
            "[[avp]]\ncode = 263\nname = \"My-Session\"\ntype = \"UTF8String\"\n\n\
             [[avp]]\ncode = 9999\nvendor = 4242\nname = \"Private\"\ntype = \"Grouped\"\n\n\
             [[application]]\nid = 4242\nname = \"Mine\"\n",
            "ext.toml",
        )
        .unwrap();
        assert_eq!(d.avp(263, None).unwrap().name, "My-Session");
        assert!(d.is_grouped(9999, Some(4242)));
        assert_eq!(d.application(4242).unwrap().name, "Mine");
        assert_eq!(d.application(16777238).unwrap().name, "Gx", "the rest stays");
    }

    #[test]
    fn mistakes_name_the_file_the_line_and_what() {
        assert_eq!(
            error_of("[[avp]]\ncode = 1\nname = \"X\"\ntype = \"Strng\"\n"),
            "ext.toml:4: unknown variant `Strng`, expected one of `OctetString`, `Integer32`, `Integer64`, \
             `Unsigned32`, `Unsigned64`, `Float32`, `Float64`, `Grouped`, `Address`, `Time`, `UTF8String`, \
             `DiameterIdentity`, `DiameterURI`, `Enumerated`, `IPFilterRule`, `QoSFilterRule`"
        );
        assert_eq!(error_of("[[avp]]\ncode = 1\ntype = \"Time\"\n"), "ext.toml:1: missing field `name`");
        assert_eq!(error_of("[[avp]\n"), "ext.toml:1: unclosed array table, expected `]`");
        assert_eq!(
            error_of(
                "[[avp]]\ncode = 1\nname = \"A\"\ntype = \"Time\"\n[[avp]]\ncode = 1\nname = \"B\"\ntype = \"Time\"\n"
            ),
            "ext.toml:5: AVP 1 of vendor 0 is defined twice (first at line 1)"
        );
        assert_eq!(
            error_of("\n[[avp]]\ncode = 1\nname = \"A\"\ntype = \"Time\"\nvalues = [[1, \"X\"]]\n"),
            "ext.toml:2: AVP 1 (A): values given for a Time, which has none"
        );
        assert_eq!(
            error_of("[[command]]\ncode = 1\nname = \"X\"\nrequest = \"\"\nanswer = \"XA\"\n"),
            "ext.toml:1: request is empty"
        );
        assert_eq!(
            error_of("[[avp]]\ncode = -1\nname = \"A\"\ntype = \"Time\"\n"),
            "ext.toml:2: invalid value: integer `-1`, expected u32"
        );
        assert_eq!(
            error_of("[[apps]]\nid = 1\n"),
            "ext.toml:1: unknown field `apps`, expected one of `vendor`, `application`, `command`, `avp`"
        );
    }

    #[test]
    fn a_file_that_cannot_be_read_is_named() {
        let e = Dictionary::with_file(Path::new("/nonexistent/dict.toml")).unwrap_err().to_string();
        assert!(e.starts_with("/nonexistent/dict.toml: "), "{e}");
    }

    #[test]
    fn result_codes_fall_in_classes() {
        assert_eq!(ResultClass::of(2001), ResultClass::Success);
        assert_eq!(ResultClass::of(5001), ResultClass::PermanentFailure);
        assert_eq!(ResultClass::of(3002), ResultClass::ProtocolError);
        assert_eq!(ResultClass::of(4010), ResultClass::TransientFailure);
        assert_eq!(ResultClass::of(1001), ResultClass::Informational);
        assert_eq!(ResultClass::of(0), ResultClass::Unknown);
    }
}
