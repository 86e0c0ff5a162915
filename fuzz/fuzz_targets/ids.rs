//! The text forms people and peers hand in: `ContentId` (`cairn1…`, also the value of every name
//! record), `Name` (`cairnname1…`), `ContentPath` (`ID[/path]`), `KeyName` and `parse_ttl`.
//! What parses must print back to something that parses to the same value, and an error, which
//! echoes the input, must carry no raw control characters (terminal escapes).

#![no_main]

use std::fmt::Display;
use std::str::FromStr;

use cairn_node::{ContentId, ContentPath, KeyName, MAX_NAME_TTL, Name, parse_ttl};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check::<ContentId>(text);
    check::<Name>(text);
    check::<ContentPath>(text);
    check::<KeyName>(text);
    match parse_ttl(text) {
        Ok(ttl) => assert!(ttl.as_secs() >= 1 && ttl <= MAX_NAME_TTL, "{ttl:?}"),
        Err(e) => no_control(&e.to_string()),
    }
});

fn check<T>(text: &str)
where
    T: FromStr + Display + PartialEq + std::fmt::Debug,
    T::Err: Display,
{
    match text.parse::<T>() {
        Ok(value) => {
            let printed = value.to_string();
            match printed.parse::<T>() {
                Ok(back) => assert_eq!(back, value, "{printed:?}"),
                Err(e) => panic!("{printed:?}, printed from {value:?}, does not parse: {e}"),
            }
        }
        Err(e) => no_control(&e.to_string()),
    }
}

fn no_control(message: &str) {
    assert!(
        !message.chars().any(char::is_control),
        "raw control character in {message:?}"
    );
}
