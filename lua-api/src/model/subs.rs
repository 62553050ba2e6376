//! Subs: what identifies one (module, version, name), the reference Lua
//! holds (`SubRef`, a userdata), the names the model accepts, and the check
//! that a Sub captures no upvalue but `_ENV`.
//!
//! A Sub travels as its id, never as code: [`SubId::key`] is the id as the
//! codec writes it (`codec::SUB` and three length-prefixed strings), made
//! once per reference. A Sub message carries that key in front of its
//! arguments, and the receiver looks the same bytes up in the table of the
//! Subs it runs (`ModelState::find_sub`): one hash of the key, no Lua value
//! made before the Sub is known.

use std::sync::Arc;

use mlua::{Function, Lua, MetaMethod, UserData, UserDataFields, UserDataMethods};

use crate::codec;

/// Longest module, Sub or event name.
pub const MAX_NAME: usize = 128;
/// Longest version.
pub const MAX_VERSION: usize = 64;

/// Why a name or a version is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("a module name must be words of letters, digits, '_' or '-' joined by dots (as 'userinfo.server'), got {0:?}")]
    Module(String),
    #[error("a {what} name must be a non-empty string of at most {MAX_NAME} printable characters without spaces, got {got:?}")]
    Name { what: &'static str, got: String },
    #[error("a version must be a non-empty string of at most {MAX_VERSION} printable characters without spaces (as '1.0'), got {0:?}")]
    Version(String),
}

fn printable_word(text: &str, max: usize) -> bool {
    !text.is_empty() && text.len() <= max && text.chars().all(|c| c.is_ascii_graphic())
}

/// A module name: `a`, `a.b`, `user-info.server_2`. It is also a path
/// (`a/b.lua`), so no empty word, no `..`, no `/`.
pub fn check_module_name(name: &str) -> Result<(), NameError> {
    let words_ok = name.len() <= MAX_NAME
        && name.split('.').all(|word| {
            !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
    if words_ok {
        Ok(())
    } else {
        Err(NameError::Module(name.to_string()))
    }
}

/// A Sub or event name (`what` says which, for the message).
pub fn check_name(what: &'static str, name: &str) -> Result<(), NameError> {
    if printable_word(name, MAX_NAME) {
        Ok(())
    } else {
        Err(NameError::Name {
            what,
            got: name.to_string(),
        })
    }
}

pub fn check_version(version: &str) -> Result<(), NameError> {
    if printable_word(version, MAX_VERSION) {
        Ok(())
    } else {
        Err(NameError::Version(version.to_string()))
    }
}

/// What names a Sub: (module, version, name), and its key (see the module
/// header).
#[derive(Debug, PartialEq, Eq)]
pub struct SubId {
    module: String,
    version: String,
    name: String,
    key: Box<[u8]>,
}

impl SubId {
    /// An id from checked parts (see [`check_module_name`] and friends).
    pub fn new(module: &str, version: &str, name: &str) -> SubId {
        SubId {
            key: codec::sub_key(module, version, name).into_boxed_slice(),
            module: module.to_string(),
            version: version.to_string(),
            name: name.to_string(),
        }
    }

    /// The id as the codec writes it.
    pub fn key(&self) -> &[u8] {
        &self.key
    }
}

impl std::fmt::Display for SubId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}:{}", self.module, self.version, self.name)
    }
}

/// The Lua value of a Sub reference: `lunet.sub(...)`, `M.sub(...)`, or
/// one that arrived in a message. Cheap to copy; compared by id.
#[derive(Clone, Debug)]
pub struct SubRef(pub Arc<SubId>);

impl UserData for SubRef {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("module", |_, this| Ok(this.0.module.clone()));
        fields.add_field_method_get("version", |_, this| Ok(this.0.version.clone()));
        fields.add_field_method_get("name", |_, this| Ok(this.0.name.clone()));
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(MetaMethod::ToString, |_, this, ()| {
            Ok(format!("lunet.sub({})", this.0))
        });
        methods.add_meta_method(MetaMethod::Eq, |_, this, other: mlua::AnyUserData| {
            Ok(other
                .borrow::<SubRef>()
                .is_ok_and(|other| other.0.key == this.0.key))
        });
    }
}

/// The name of the first upvalue of `function` other than `_ENV`, if any:
/// a Sub runs in another runtime, so it may reach nothing but its
/// arguments and the globals of its module.
pub fn captured_upvalue(lua: &Lua, function: &Function) -> mlua::Result<Option<String>> {
    let mut captured = None;
    // SAFETY: `exec_raw` pushes `function` at index 1 and restores the stack
    // afterwards; the closure only reads upvalue names (lua_getupvalue
    // pushes each value, popped at once), and copies a name before the
    // next call can invalidate it.
    unsafe {
        lua.exec_raw::<()>(function, |state| {
            let mut index = 1;
            loop {
                let name = mlua::ffi::lua_getupvalue(state, 1, index);
                if name.is_null() {
                    break;
                }
                mlua::ffi::lua_pop(state, 1);
                let name = std::ffi::CStr::from_ptr(name).to_string_lossy();
                if name != "_ENV" {
                    captured = Some(name.into_owned());
                    break;
                }
                index += 1;
            }
        })?;
    }
    Ok(captured)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions_are_checked() {
        assert!(check_module_name("userinfo.server").is_ok());
        assert!(check_module_name("a-b.c_2").is_ok());
        for bad in ["", ".a", "a.", "a..b", "a/b", "../x", "a b", "ü"] {
            assert!(check_module_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name("event", "device-near").is_ok());
        assert!(check_name("Sub", "").is_err());
        assert!(check_name("Sub", "two words").is_err());
        assert!(check_version("1.0").is_ok());
        assert!(check_version("").is_err());
        assert!(check_version(&"9".repeat(65)).is_err());
    }

    #[test]
    fn upvalues_other_than_env_are_named() {
        let lua = Lua::new();
        let clean: Function = lua
            .load("return function(ctx, x) return print, x end")
            .eval()
            .unwrap();
        assert_eq!(captured_upvalue(&lua, &clean).unwrap(), None);
        let none: Function = lua.load("return function() end").eval().unwrap();
        assert_eq!(captured_upvalue(&lua, &none).unwrap(), None);
        let capturing: Function = lua
            .load("local M = {} return function(ctx) return print, M end")
            .eval()
            .unwrap();
        assert_eq!(
            captured_upvalue(&lua, &capturing).unwrap(),
            Some("M".to_string())
        );
    }

    #[test]
    fn references_compare_by_id_and_show_it() {
        let lua = Lua::new();
        let make = |name: &str| SubRef(Arc::new(SubId::new("a.b", "1.0", name)));
        lua.globals().set("x", make("login")).unwrap();
        lua.globals().set("y", make("login")).unwrap();
        lua.globals().set("z", make("logout")).unwrap();
        let (same, different, text, module): (bool, bool, String, String) = lua
            .load("return x == y, x == z, tostring(x), x.module")
            .eval()
            .unwrap();
        assert!(same && !different);
        assert_eq!(text, "lunet.sub(a.b@1.0:login)");
        assert_eq!(module, "a.b");
    }
}
