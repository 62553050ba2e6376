//! `lunet.json`: a JSON codec (RFC 8259) that walks Lua values directly.
//!
//! [`module`] returns `{encode=, decode=, null=, array_mt=}`:
//!
//! - `encode(v)` → string. nil and `null` → `null`; booleans; integers as
//!   integers; floats in their shortest round-trip form (`1.0` stays `1.0`,
//!   so it decodes back to a float); strings escaped (`"` `\` and control
//!   bytes), which must be UTF-8. A table whose keys are exactly 1..n is an
//!   array; a table whose keys are all strings is an object; an empty table
//!   is `{}` unless its metatable is `array_mt`, then `[]`. Raised, with the
//!   offending key named: a cycle, nesting over [`MAX_DEPTH`], NaN or ±inf,
//!   a sparse array, keys of mixed kinds, a key that is neither string nor
//!   integer, functions, userdata and threads, invalid UTF-8. Metatables
//!   other than `array_mt` are ignored (raw access, as lua-cjson).
//! - `decode(s)` → value, or `nil, err` where `err` names the 1-based byte
//!   position: strict RFC 8259 (no comments, no trailing commas, no leading
//!   zeros, no NaN, whitespace is space, tab, CR, LF), UTF-8 validated,
//!   `\u` escapes with surrogate pairs (a lone surrogate is an error),
//!   integers that fit 64 bits become Lua integers and other numbers floats
//!   (`-0` is the float -0.0), `null` becomes `json.null`, arrays get
//!   `array_mt` (so `encode(decode("[]"))` is `[]`), nesting over
//!   [`MAX_DEPTH`] is an error. A duplicate key keeps the last value.
//! - `null` is a light userdata holding NULL (the same value as lua-cjson's
//!   `cjson.null` and mlua's `Value::NULL`).
//!
//! Speed. Both functions are C functions on the raw Lua stack: no mlua
//! value handles, no per-value registry references. Their Rust frames hold
//! only plain data (raw pointers, integers), because a Lua API call that
//! fails to allocate raises a Lua error by `longjmp` through them; the
//! buffers live in a userdata (the "scratch", an upvalue of both functions,
//! freed by its `__gc`), so an error leaks nothing. Encoding only reads the
//! stack with calls that cannot raise (`lua_next` on keys it produced,
//! `lua_rawgeti`, `lua_tolstring` on strings only), and raises its own
//! errors after the walk. A Rust panic is caught and raised as a Lua error.

use std::fmt::Write as _;
use std::os::raw::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use lunet_core::proto::write_signed;
use mlua::{ffi, Function, LightUserData, Lua, Table, Value};

/// Deepest nesting of arrays and objects, both ways (lua-cjson's default).
pub const MAX_DEPTH: usize = 1000;

/// Past this capacity the encode buffer is given back after a call, so one
/// large document does not pin its size in every VM.
const SHRINK_ABOVE: usize = 1024 * 1024;

/// Upvalue 1 of encode and decode: the `array_mt` table.
const ARRAY_MT: c_int = ffi::lua_upvalueindex(1);
/// Upvalue 2: the scratch userdata.
const SCRATCH: c_int = ffi::lua_upvalueindex(2);

/// Buffers reused across calls; lives inside a Lua userdata.
#[derive(Default)]
struct Scratch {
    /// Encode output; decode's buffer for strings with escapes.
    bytes: Vec<u8>,
    /// Encode: the tables on the path from the root, to detect cycles.
    path: Vec<*const c_void>,
}

/// Builds the `lunet.json` table for `lua`.
pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let array_mt = lua.create_table()?;
    array_mt.raw_set("__name", "lunet.json.array")?;
    // SAFETY: exec_raw runs the closure in a protected call with
    // `array_mt` pushed; the closure leaves exactly the two functions above
    // the arguments' base, which exec_raw returns.
    let (encode_function, decode_function): (Function, Function) = unsafe {
        lua.exec_raw(&array_mt, |state| {
            let memory =
                ffi::lua_newuserdatauv(state, std::mem::size_of::<Scratch>(), 0) as *mut Scratch;
            // Lua aligns userdata memory for any C type (LUAI_MAXALIGN).
            ptr::write(memory, Scratch::default());
            ffi::lua_createtable(state, 0, 1);
            ffi::lua_pushcfunction(state, drop_scratch);
            ffi::lua_setfield(state, -2, c"__gc".as_ptr());
            ffi::lua_setmetatable(state, -2);
            // Stack: array_mt, scratch.
            ffi::lua_pushvalue(state, -2);
            ffi::lua_pushvalue(state, -2);
            ffi::lua_pushcclosure(state, encode, 2);
            ffi::lua_pushvalue(state, -3);
            ffi::lua_pushvalue(state, -3);
            ffi::lua_pushcclosure(state, decode, 2);
            // Stack: array_mt, scratch, encode, decode.
            ffi::lua_remove(state, -3);
            ffi::lua_remove(state, -3);
        })?
    };
    let json = lua.create_table()?;
    json.raw_set("encode", encode_function)?;
    json.raw_set("decode", decode_function)?;
    json.raw_set("null", Value::LightUserData(LightUserData(ptr::null_mut())))?;
    json.raw_set("array_mt", array_mt)?;
    Ok(json)
}

/// `__gc` of the scratch userdata.
unsafe extern "C-unwind" fn drop_scratch(state: *mut ffi::lua_State) -> c_int {
    // SAFETY: this metatable is only set on a Scratch made in `module`, and
    // __gc runs once.
    let memory = ffi::lua_touserdata(state, 1) as *mut Scratch;
    if !memory.is_null() {
        ptr::drop_in_place(memory);
    }
    0
}

/// A short message built without the heap, so that it can be raised with
/// `lua_error` (which does not return: nothing with a destructor may be
/// live in the raising frame).
struct Message {
    text: [u8; 256],
    len: usize,
}

impl Message {
    fn new() -> Message {
        Message {
            text: [0; 256],
            len: 0,
        }
    }
}

impl std::fmt::Write for Message {
    fn write_str(&mut self, piece: &str) -> std::fmt::Result {
        // Truncated at a character boundary when full.
        let room = self.text.len() - self.len;
        let mut take = piece.len().min(room);
        while !piece.is_char_boundary(take) {
            take -= 1;
        }
        self.text[self.len..self.len + take].copy_from_slice(&piece.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

/// Raises `message` as a Lua error.
unsafe fn raise(state: *mut ffi::lua_State, message: &Message) -> ! {
    ffi::lua_pushlstring(state, message.text.as_ptr().cast(), message.len);
    ffi::lua_error(state)
}

/// A key to show in an error: its first bytes, or its number.
#[derive(Clone, Copy, Debug)]
enum Key {
    Text([u8; 40], usize),
    Integer(i64),
    Float(f64),
    Other(&'static str),
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Text(bytes, len) => write!(
                f,
                "\"{}\"",
                String::from_utf8_lossy(&bytes[..*len]).escape_debug()
            ),
            Key::Integer(n) => write!(f, "{n}"),
            Key::Float(x) => write!(f, "{x:?}"),
            Key::Other(kind) => write!(f, "a {kind}"),
        }
    }
}

/// Why encode refused a value.
#[derive(Clone, Copy, Debug)]
enum EncodeError {
    Cycle,
    TooDeep,
    NotFinite(f64),
    /// A sparse array: `missing` is absent, `largest` present.
    Sparse {
        missing: i64,
        largest: i64,
    },
    /// An integer key below 1.
    BadIndex(i64),
    /// String and integer keys in one table.
    Mixed(Key),
    /// A key that is neither a string nor an integer.
    BadKey(Key),
    BadValue(&'static str),
    InvalidUtf8 {
        in_key: bool,
    },
}

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EncodeError::Cycle => write!(f, "a table contains itself (cycle)"),
            EncodeError::TooDeep => write!(f, "nesting deeper than {MAX_DEPTH}"),
            EncodeError::NotFinite(x) => write!(f, "cannot encode {x} (JSON has no NaN or infinity)"),
            EncodeError::Sparse { missing, largest } => write!(
                f,
                "sparse array: key {missing} is missing below key {largest} (an array's keys are 1..n)"
            ),
            EncodeError::BadIndex(n) => write!(f, "array key {n} is not in 1..n"),
            EncodeError::Mixed(key) => {
                write!(f, "table mixes integer and string keys (key {key}); JSON has arrays or objects")
            }
            EncodeError::BadKey(key) => write!(f, "object key {key} is not a string"),
            EncodeError::BadValue(kind) => write!(f, "cannot encode a {kind}"),
            EncodeError::InvalidUtf8 { in_key: true } => write!(f, "a key is not valid UTF-8"),
            EncodeError::InvalidUtf8 { in_key: false } => write!(f, "a string is not valid UTF-8"),
        }
    }
}

/// `json.encode(v)`.
unsafe extern "C-unwind" fn encode(state: *mut ffi::lua_State) -> c_int {
    ffi::lua_settop(state, 1);
    let scratch = ffi::lua_touserdata(state, SCRATCH) as *mut Scratch;
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: upvalue 2 is the Scratch made in `module`. The walk calls
        // no Lua function that allocates, so no finalizer can run (and
        // re-enter this codec) while this reference lives.
        let scratch = &mut *scratch;
        scratch.bytes.clear();
        scratch.path.clear();
        let mut encoder = Encoder {
            state,
            out: &mut scratch.bytes,
            path: &mut scratch.path,
        };
        encoder.value(1)
    }));
    let mut message = Message::new();
    match outcome {
        Ok(Ok(())) => {
            let (text, len) = ((*scratch).bytes.as_ptr(), (*scratch).bytes.len());
            // Copies the text before its GC step, which may run finalizers
            // that use the scratch again.
            ffi::lua_pushlstring(state, text.cast(), len);
            let bytes = &mut (*scratch).bytes;
            if bytes.capacity() > SHRINK_ABOVE {
                *bytes = Vec::new();
            }
            return 1;
        }
        Ok(Err(error)) => {
            let _ = write!(message, "json.encode: {error}");
        }
        Err(payload) => {
            // Dropped here: lua_error below skips this frame's destructors.
            drop(payload);
            let _ = write!(message, "json.encode: internal error");
        }
    }
    ffi::lua_settop(state, 1);
    raise(state, &message)
}

struct Encoder<'a> {
    state: *mut ffi::lua_State,
    out: &'a mut Vec<u8>,
    path: &'a mut Vec<*const c_void>,
}

impl Encoder<'_> {
    /// Appends the value at absolute stack index `index`.
    unsafe fn value(&mut self, index: c_int) -> Result<(), EncodeError> {
        let state = self.state;
        match ffi::lua_type(state, index) {
            ffi::LUA_TNIL => self.out.extend_from_slice(b"null"),
            ffi::LUA_TBOOLEAN => {
                let text: &[u8] = if ffi::lua_toboolean(state, index) != 0 {
                    b"true"
                } else {
                    b"false"
                };
                self.out.extend_from_slice(text);
            }
            ffi::LUA_TNUMBER => {
                if ffi::lua_isinteger(state, index) != 0 {
                    write_signed(self.out, ffi::lua_tointegerx(state, index, ptr::null_mut()));
                } else {
                    let x = ffi::lua_tonumberx(state, index, ptr::null_mut());
                    if !x.is_finite() {
                        return Err(EncodeError::NotFinite(x));
                    }
                    // Debug gives the shortest text that reads back as the
                    // same float, with ".0" or an exponent: valid JSON.
                    let _ = std::io::Write::write_fmt(self.out, format_args!("{x:?}"));
                }
            }
            ffi::LUA_TSTRING => self.string(index, false)?,
            ffi::LUA_TTABLE => self.table(index)?,
            ffi::LUA_TLIGHTUSERDATA if ffi::lua_touserdata(state, index).is_null() => {
                self.out.extend_from_slice(b"null")
            }
            other => return Err(EncodeError::BadValue(type_name(other))),
        }
        Ok(())
    }

    /// Appends the string at `index` (a string, not a number) quoted.
    unsafe fn string(&mut self, index: c_int, in_key: bool) -> Result<(), EncodeError> {
        let mut len = 0;
        let data = ffi::lua_tolstring(self.state, index, &mut len);
        // SAFETY: a Lua string is valid for `len` bytes while it is on the
        // stack.
        let bytes = std::slice::from_raw_parts(data.cast::<u8>(), len);
        if std::str::from_utf8(bytes).is_err() {
            return Err(EncodeError::InvalidUtf8 { in_key });
        }
        write_escaped(self.out, bytes);
        Ok(())
    }

    unsafe fn table(&mut self, index: c_int) -> Result<(), EncodeError> {
        let state = self.state;
        if self.path.len() >= MAX_DEPTH || ffi::lua_checkstack(state, 6) == 0 {
            return Err(EncodeError::TooDeep);
        }
        let identity = ffi::lua_topointer(state, index);
        if self.path.contains(&identity) {
            return Err(EncodeError::Cycle);
        }
        self.path.push(identity);
        let result = self.table_body(index);
        self.path.pop();
        result
    }

    unsafe fn table_body(&mut self, index: c_int) -> Result<(), EncodeError> {
        let state = self.state;
        ffi::lua_pushnil(state);
        if ffi::lua_next(state, index) == 0 {
            let is_array = ffi::lua_getmetatable(state, index) != 0 && {
                let same = ffi::lua_rawequal(state, -1, ARRAY_MT) != 0;
                ffi::lua_pop(state, 1);
                same
            };
            self.out
                .extend_from_slice(if is_array { b"[]" } else { b"{}" });
            return Ok(());
        }
        // Stack: key, value.
        match ffi::lua_type(state, -2) {
            ffi::LUA_TSTRING => self.object(index),
            ffi::LUA_TNUMBER if ffi::lua_isinteger(state, -2) != 0 => self.array(index),
            _ => {
                let key = key_of(state, -2);
                ffi::lua_pop(state, 2);
                Err(EncodeError::BadKey(key))
            }
        }
    }

    /// An object; the first key and value are on the stack.
    unsafe fn object(&mut self, index: c_int) -> Result<(), EncodeError> {
        let state = self.state;
        self.out.push(b'{');
        loop {
            if ffi::lua_type(state, -2) != ffi::LUA_TSTRING {
                let key = key_of(state, -2);
                ffi::lua_pop(state, 2);
                return Err(if matches!(key, Key::Integer(_)) {
                    EncodeError::Mixed(key)
                } else {
                    EncodeError::BadKey(key)
                });
            }
            if let Err(error) = self.string(ffi::lua_gettop(state) - 1, true) {
                ffi::lua_pop(state, 2);
                return Err(error);
            }
            self.out.push(b':');
            let value = ffi::lua_gettop(state);
            if let Err(error) = self.value(value) {
                ffi::lua_pop(state, 2);
                return Err(error);
            }
            ffi::lua_pop(state, 1);
            if ffi::lua_next(state, index) == 0 {
                break;
            }
            self.out.push(b',');
        }
        self.out.push(b'}');
        Ok(())
    }

    /// An array; the first key (an integer) and value are on the stack.
    /// Fast path: `lua_next` walks the array part in order, so keys 1, 2,
    /// ... arriving in order with nothing else are exactly 1..n. Any other
    /// order goes to [`Encoder::array_slow`].
    unsafe fn array(&mut self, index: c_int) -> Result<(), EncodeError> {
        let state = self.state;
        let start = self.out.len();
        self.out.push(b'[');
        let mut expected: i64 = 1;
        loop {
            let in_order = ffi::lua_isinteger(state, -2) != 0
                && ffi::lua_tointegerx(state, -2, ptr::null_mut()) == expected;
            if !in_order {
                ffi::lua_pop(state, 2);
                self.out.truncate(start);
                return self.array_slow(index);
            }
            if expected > 1 {
                self.out.push(b',');
            }
            let value = ffi::lua_gettop(state);
            if let Err(error) = self.value(value) {
                ffi::lua_pop(state, 2);
                return Err(error);
            }
            ffi::lua_pop(state, 1);
            expected += 1;
            if ffi::lua_next(state, index) == 0 {
                break;
            }
        }
        self.out.push(b']');
        Ok(())
    }

    /// An array whose keys were not met in order: count them, check they
    /// are 1..n, then write t[1..n].
    unsafe fn array_slow(&mut self, index: c_int) -> Result<(), EncodeError> {
        let state = self.state;
        let (mut count, mut largest): (i64, i64) = (0, 0);
        ffi::lua_pushnil(state);
        while ffi::lua_next(state, index) != 0 {
            ffi::lua_pop(state, 1);
            let key_type = ffi::lua_type(state, -1);
            if key_type != ffi::LUA_TNUMBER || ffi::lua_isinteger(state, -1) == 0 {
                let key = key_of(state, -1);
                ffi::lua_pop(state, 1);
                return Err(if key_type == ffi::LUA_TSTRING {
                    EncodeError::Mixed(key)
                } else {
                    EncodeError::BadKey(key)
                });
            }
            let n = ffi::lua_tointegerx(state, -1, ptr::null_mut());
            if n < 1 {
                ffi::lua_pop(state, 1);
                return Err(EncodeError::BadIndex(n));
            }
            count += 1;
            largest = largest.max(n);
        }
        if count != largest {
            let mut missing = 1;
            while missing < largest {
                let kind = ffi::lua_rawgeti(state, index, missing);
                ffi::lua_pop(state, 1);
                if kind == ffi::LUA_TNIL {
                    break;
                }
                missing += 1;
            }
            return Err(EncodeError::Sparse { missing, largest });
        }
        self.out.push(b'[');
        for i in 1..=largest {
            if i > 1 {
                self.out.push(b',');
            }
            ffi::lua_rawgeti(state, index, i);
            let result = self.value(ffi::lua_gettop(state));
            ffi::lua_pop(state, 1);
            result?;
        }
        self.out.push(b']');
        Ok(())
    }
}

/// A key at `index` for an error message (strings are copied in part,
/// never converted: the key may be in use by `lua_next`).
unsafe fn key_of(state: *mut ffi::lua_State, index: c_int) -> Key {
    match ffi::lua_type(state, index) {
        ffi::LUA_TSTRING => {
            let mut len = 0;
            let data = ffi::lua_tolstring(state, index, &mut len);
            let bytes = std::slice::from_raw_parts(data.cast::<u8>(), len);
            let mut text = [0u8; 40];
            let take = len.min(text.len());
            text[..take].copy_from_slice(&bytes[..take]);
            Key::Text(text, take)
        }
        ffi::LUA_TNUMBER if ffi::lua_isinteger(state, index) != 0 => {
            Key::Integer(ffi::lua_tointegerx(state, index, ptr::null_mut()))
        }
        ffi::LUA_TNUMBER => Key::Float(ffi::lua_tonumberx(state, index, ptr::null_mut())),
        other => Key::Other(type_name(other)),
    }
}

fn type_name(kind: c_int) -> &'static str {
    match kind {
        ffi::LUA_TNIL => "nil",
        ffi::LUA_TBOOLEAN => "boolean",
        ffi::LUA_TLIGHTUSERDATA => "light userdata",
        ffi::LUA_TNUMBER => "number",
        ffi::LUA_TSTRING => "string",
        ffi::LUA_TTABLE => "table",
        ffi::LUA_TFUNCTION => "function",
        ffi::LUA_TUSERDATA => "userdata",
        ffi::LUA_TTHREAD => "thread",
        _ => "value of unknown type",
    }
}

/// What a byte of a string becomes: 0 = itself, b'u' = `\u00XX`, other =
/// a backslash and that letter.
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = b'u';
        byte += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

fn write_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut run = 0;
    for (at, &byte) in bytes.iter().enumerate() {
        let escape = ESCAPE[byte as usize];
        if escape == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[run..at]);
        run = at + 1;
        if escape == b'u' {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(byte >> 4) as usize],
                HEX[(byte & 15) as usize],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', escape]);
        }
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

/// Why decode refused a document, and where (0-based).
#[derive(Clone, Copy, Debug)]
struct DecodeError {
    at: usize,
    what: &'static str,
}

/// `json.decode(s)`.
unsafe extern "C-unwind" fn decode(state: *mut ffi::lua_State) -> c_int {
    if ffi::lua_type(state, 1) != ffi::LUA_TSTRING {
        let mut message = Message::new();
        let _ = write!(
            message,
            "json.decode: expected a string, got {}",
            type_name(ffi::lua_type(state, 1))
        );
        raise(state, &message);
    }
    ffi::lua_settop(state, 1);
    let mut len = 0;
    let data = ffi::lua_tolstring(state, 1, &mut len);
    // SAFETY: the string stays at index 1 until this function returns.
    let input = std::slice::from_raw_parts(data.cast::<u8>(), len);
    let scratch = ffi::lua_touserdata(state, SCRATCH) as *mut Scratch;
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        if let Err(error) = std::str::from_utf8(input) {
            return Err(DecodeError {
                at: error.valid_up_to(),
                what: "invalid UTF-8",
            });
        }
        let mut decoder = Decoder {
            state,
            input,
            at: 0,
            depth: 0,
            // SAFETY: upvalue 2 is the Scratch made in `module`; it lives as
            // long as this function (see `Decoder::buffer`).
            buffer: ptr::addr_of_mut!((*scratch).bytes),
        };
        decoder.document()
    }));
    let mut message = Message::new();
    match outcome {
        Ok(Ok(())) => return 1,
        Ok(Err(error)) => {
            let _ = write!(
                message,
                "json.decode: {} at byte {}",
                error.what,
                error.at + 1
            );
        }
        Err(_) => {
            let _ = write!(message, "json.decode: internal error");
        }
    }
    ffi::lua_settop(state, 1);
    ffi::lua_pushnil(state);
    ffi::lua_pushlstring(state, message.text.as_ptr().cast(), message.len);
    2
}

struct Decoder<'a> {
    state: *mut ffi::lua_State,
    /// The string at stack index 1.
    input: &'a [u8],
    at: usize,
    depth: usize,
    /// For strings with escapes: the scratch's bytes.
    buffer: *mut Vec<u8>,
}

impl Decoder<'_> {
    /// The buffer for strings with escapes. Lua calls that allocate may run
    /// finalizers, which may call this codec and use the same buffer, so
    /// the reference is taken afresh and never held across a Lua call.
    fn buffer(&mut self) -> &mut Vec<u8> {
        // SAFETY: the scratch lives while its functions run; no other
        // reference to it is alive between two Lua calls of this decoder.
        unsafe { &mut *self.buffer }
    }

    fn fail<T>(&self, what: &'static str) -> Result<T, DecodeError> {
        Err(DecodeError { at: self.at, what })
    }

    fn skip_space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.input.get(self.at) {
            self.at += 1;
        }
    }

    unsafe fn document(&mut self) -> Result<(), DecodeError> {
        self.value()?;
        self.skip_space();
        if self.at < self.input.len() {
            return self.fail("unexpected text after the value");
        }
        Ok(())
    }

    /// Pushes the value at the cursor.
    unsafe fn value(&mut self) -> Result<(), DecodeError> {
        self.skip_space();
        let state = self.state;
        match self.input.get(self.at) {
            None => self.fail("unexpected end of input"),
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => self.string(),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal(b"true", || ffi::lua_pushboolean(state, 1)),
            Some(b'f') => self.literal(b"false", || ffi::lua_pushboolean(state, 0)),
            Some(b'n') => self.literal(b"null", || {
                ffi::lua_pushlightuserdata(state, ptr::null_mut())
            }),
            Some(_) => self.fail("unexpected character"),
        }
    }

    unsafe fn literal(&mut self, word: &[u8], push: impl FnOnce()) -> Result<(), DecodeError> {
        if !self.input[self.at..].starts_with(word) {
            return self.fail("invalid literal");
        }
        self.at += word.len();
        push();
        Ok(())
    }

    /// Enters an array or object: depth and Lua stack room.
    unsafe fn enter(&mut self) -> Result<(), DecodeError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH || ffi::lua_checkstack(self.state, 4) == 0 {
            return self.fail("nesting too deep");
        }
        self.at += 1;
        Ok(())
    }

    /// Makes room on the Lua stack for one more member (and what building
    /// the table needs).
    unsafe fn room(&self) -> Result<(), DecodeError> {
        if ffi::lua_checkstack(self.state, 5) == 0 {
            return self.fail("document too large for the Lua stack");
        }
        Ok(())
    }

    /// Leaves the array or object just closed.
    fn leave(&mut self) {
        self.at += 1;
        self.depth -= 1;
    }

    /// An object. Its first [`GATHER`] members wait on the Lua stack and
    /// the table is made at their number (a table grown one key at a time
    /// is rehashed at every power of two); members past that are set one
    /// by one.
    unsafe fn object(&mut self) -> Result<(), DecodeError> {
        let state = self.state;
        self.enter()?;
        let base = ffi::lua_gettop(state);
        let mut gathered = 0;
        let mut made = false;
        self.skip_space();
        if self.input.get(self.at) == Some(&b'}') {
            ffi::lua_createtable(state, 0, 0);
            self.leave();
            return Ok(());
        }
        loop {
            if !made && gathered == GATHER {
                make_object(state, base, gathered);
                made = true;
            }
            self.room()?;
            self.skip_space();
            if self.input.get(self.at) != Some(&b'"') {
                return self.fail("expected a string key");
            }
            self.string()?;
            self.skip_space();
            if self.input.get(self.at) != Some(&b':') {
                return self.fail("expected ':'");
            }
            self.at += 1;
            self.value()?;
            if made {
                ffi::lua_rawset(state, base + 1);
            } else {
                gathered += 1;
            }
            self.skip_space();
            match self.input.get(self.at) {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    if !made {
                        make_object(state, base, gathered);
                    }
                    self.leave();
                    return Ok(());
                }
                _ => return self.fail("expected ',' or '}'"),
            }
        }
    }

    /// An array, its first [`GATHER`] items gathered as in
    /// [`Decoder::object`].
    unsafe fn array(&mut self) -> Result<(), DecodeError> {
        let state = self.state;
        self.enter()?;
        let base = ffi::lua_gettop(state);
        let mut count = 0;
        let mut made = false;
        self.skip_space();
        if self.input.get(self.at) == Some(&b']') {
            make_array(state, base, 0);
            self.leave();
            return Ok(());
        }
        loop {
            if !made && count == GATHER {
                make_array(state, base, count);
                made = true;
            }
            self.room()?;
            self.value()?;
            count += 1;
            if made {
                ffi::lua_rawseti(state, base + 1, count as ffi::lua_Integer);
            }
            self.skip_space();
            match self.input.get(self.at) {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    if !made {
                        make_array(state, base, count);
                    }
                    self.leave();
                    return Ok(());
                }
                _ => return self.fail("expected ',' or ']'"),
            }
        }
    }

    /// Pushes the string whose opening quote is at the cursor.
    unsafe fn string(&mut self) -> Result<(), DecodeError> {
        let input = self.input;
        let start = self.at + 1;
        let mut at = start;
        // Fast path: no escapes.
        while let Some(&byte) = input.get(at) {
            match byte {
                b'"' => {
                    let piece = &input[start..at];
                    ffi::lua_pushlstring(self.state, piece.as_ptr().cast(), piece.len());
                    self.at = at + 1;
                    return Ok(());
                }
                b'\\' => break,
                0..=0x1f => {
                    self.at = at;
                    return self.fail("control character in a string");
                }
                _ => at += 1,
            }
        }
        let buffer = self.buffer();
        buffer.clear();
        buffer.extend_from_slice(&input[start..at]);
        loop {
            let Some(&byte) = input.get(at) else {
                self.at = start - 1;
                return self.fail("unterminated string");
            };
            match byte {
                b'"' => break,
                b'\\' => {
                    self.at = at;
                    at = self.escape(at)?;
                }
                0..=0x1f => {
                    self.at = at;
                    return self.fail("control character in a string");
                }
                _ => {
                    self.buffer().push(byte);
                    at += 1;
                }
            }
        }
        let (text, len) = (self.buffer().as_ptr(), self.buffer().len());
        ffi::lua_pushlstring(self.state, text.cast(), len);
        self.at = at + 1;
        Ok(())
    }

    /// Decodes the escape at `at` (a backslash) into the buffer; returns
    /// where the string goes on.
    fn escape(&mut self, at: usize) -> Result<usize, DecodeError> {
        let simple = match self.input.get(at + 1) {
            Some(b'"') => b'"',
            Some(b'\\') => b'\\',
            Some(b'/') => b'/',
            Some(b'b') => 0x08,
            Some(b'f') => 0x0c,
            Some(b'n') => b'\n',
            Some(b'r') => b'\r',
            Some(b't') => b'\t',
            Some(b'u') => {
                let unit = self.hex4(at + 2)?;
                let (code, next) = match unit {
                    0xd800..=0xdbff => {
                        if self.input.get(at + 6) != Some(&b'\\')
                            || self.input.get(at + 7) != Some(&b'u')
                        {
                            return self.fail("lone surrogate in a \\u escape");
                        }
                        let low = self.hex4(at + 8)?;
                        if !(0xdc00..=0xdfff).contains(&low) {
                            return self.fail("lone surrogate in a \\u escape");
                        }
                        (0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00), at + 12)
                    }
                    0xdc00..=0xdfff => return self.fail("lone surrogate in a \\u escape"),
                    _ => (unit, at + 6),
                };
                // Every value reached here is a scalar value.
                let character = char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER);
                let mut utf8 = [0u8; 4];
                self.buffer()
                    .extend_from_slice(character.encode_utf8(&mut utf8).as_bytes());
                return Ok(next);
            }
            _ => return self.fail("invalid escape"),
        };
        self.buffer().push(simple);
        Ok(at + 2)
    }

    fn hex4(&self, at: usize) -> Result<u32, DecodeError> {
        let Some(digits) = self.input.get(at..at + 4) else {
            return self.fail("invalid \\u escape");
        };
        let mut code = 0;
        for &digit in digits {
            let Some(value) = (digit as char).to_digit(16) else {
                return self.fail("invalid \\u escape");
            };
            code = code * 16 + value;
        }
        Ok(code)
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    unsafe fn number(&mut self) -> Result<(), DecodeError> {
        let input = self.input;
        let start = self.at;
        let mut at = start;
        let negative = input[at] == b'-';
        if negative {
            at += 1;
        }
        let digits_start = at;
        match input.get(at) {
            Some(b'0') => at += 1,
            Some(b'1'..=b'9') => {
                while let Some(b'0'..=b'9') = input.get(at) {
                    at += 1;
                }
            }
            _ => {
                self.at = at;
                return self.fail("invalid number");
            }
        }
        let integer_end = at;
        let mut is_float = false;
        if input.get(at) == Some(&b'.') {
            at += 1;
            let fraction = at;
            while let Some(b'0'..=b'9') = input.get(at) {
                at += 1;
            }
            if at == fraction {
                self.at = at;
                return self.fail("invalid number");
            }
            is_float = true;
        }
        if let Some(b'e' | b'E') = input.get(at) {
            at += 1;
            if let Some(b'+' | b'-') = input.get(at) {
                at += 1;
            }
            let exponent = at;
            while let Some(b'0'..=b'9') = input.get(at) {
                at += 1;
            }
            if at == exponent {
                self.at = at;
                return self.fail("invalid number");
            }
            is_float = true;
        }
        if input.get(at).is_some_and(|b| b.is_ascii_digit()) {
            self.at = at;
            return self.fail("leading zero in a number");
        }
        self.at = at;
        if !is_float {
            if let Some(n) = integer(&input[digits_start..integer_end], negative) {
                if n == 0 && negative {
                    ffi::lua_pushnumber(self.state, -0.0);
                } else {
                    ffi::lua_pushinteger(self.state, n);
                }
                return Ok(());
            }
        }
        // The text is ASCII digits, signs, '.', 'e': always UTF-8.
        let text = std::str::from_utf8(&input[start..at]).unwrap_or("");
        match text.parse::<f64>() {
            Ok(x) => {
                ffi::lua_pushnumber(self.state, x);
                Ok(())
            }
            Err(_) => self.fail("invalid number"),
        }
    }
}

/// Members of an object or items of an array gathered on the Lua stack
/// before their table is made.
const GATHER: usize = 256;

/// Replaces the `pairs` key-value pairs above `base` with a table made at
/// their number, keys set in order (a repeated key keeps its last value).
unsafe fn make_object(state: *mut ffi::lua_State, base: c_int, pairs: usize) {
    ffi::lua_createtable(state, 0, pairs as c_int);
    let table = ffi::lua_gettop(state);
    for i in 0..pairs as c_int {
        ffi::lua_pushvalue(state, base + 1 + 2 * i);
        ffi::lua_pushvalue(state, base + 2 + 2 * i);
        ffi::lua_rawset(state, table);
    }
    ffi::lua_replace(state, base + 1);
    ffi::lua_settop(state, base + 1);
}

/// Replaces the `count` items above `base` with an array made at their
/// number, with `array_mt`.
unsafe fn make_array(state: *mut ffi::lua_State, base: c_int, count: usize) {
    ffi::lua_createtable(state, count as c_int, 0);
    ffi::lua_pushvalue(state, ARRAY_MT);
    ffi::lua_setmetatable(state, -2);
    ffi::lua_insert(state, base + 1);
    for index in (1..=count as ffi::lua_Integer).rev() {
        ffi::lua_rawseti(state, base + 1, index);
    }
}

/// The digits as an i64 with the sign, or None when they do not fit.
fn integer(digits: &[u8], negative: bool) -> Option<i64> {
    let mut magnitude: u64 = 0;
    for &digit in digits {
        magnitude = magnitude
            .checked_mul(10)?
            .checked_add(u64::from(digit - b'0'))?;
    }
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lua() -> Lua {
        let lua = Lua::new();
        lua.globals().set("json", module(&lua).unwrap()).unwrap();
        lua
    }

    fn eval<T: mlua::FromLuaMulti>(lua: &Lua, code: &str) -> T {
        lua.load(code)
            .eval()
            .unwrap_or_else(|e| panic!("{code}: {e}"))
    }

    fn encode_error(lua: &Lua, code: &str) -> String {
        match lua.load(code).eval::<Value>() {
            Err(error) => error.to_string(),
            Ok(value) => panic!("{code}: no error, got {value:?}"),
        }
    }

    #[test]
    fn encodes_values() {
        let lua = lua();
        let cases = [
            ("nil", "null"),
            ("json.null", "null"),
            ("true", "true"),
            ("false", "false"),
            ("0", "0"),
            ("-42", "-42"),
            ("math.mininteger", "-9223372036854775808"),
            ("1.5", "1.5"),
            ("1.0", "1.0"),
            ("-0.0", "-0.0"),
            ("1e300", "1e300"),
            ("0.1", "0.1"),
            ("1e-7", "1e-7"),
            ("'a\"b\\\\c\\n\\t\\0\\31/'", r#""a\"b\\c\n\t\u0000\u001f/""#),
            ("'é ✓ 😀'", "\"é ✓ 😀\""),
            ("{}", "{}"),
            ("setmetatable({}, json.array_mt)", "[]"),
            ("{1, 2, 'x'}", "[1,2,\"x\"]"),
            ("{a = {b = {true}}}", r#"{"a":{"b":[true]}}"#),
            ("{json.null, json.null}", "[null,null]"),
            ("setmetatable({1}, {__index = function() end})", "[1]"),
        ];
        for (code, expected) in cases {
            let text: String = eval(&lua, &format!("return json.encode({code})"));
            assert_eq!(text, expected, "{code}");
        }
    }

    #[test]
    fn encodes_arrays_built_out_of_order() {
        let lua = lua();
        let text: String = eval(
            &lua,
            "local t = {} t[3] = 'c' t[1] = 'a' t[2] = 'b' return json.encode(t)",
        );
        assert_eq!(text, r#"["a","b","c"]"#);
        let text: String = eval(
            &lua,
            "local t = {} for i = 100, 1, -1 do t[i] = i end return json.encode(t)",
        );
        assert_eq!(
            text,
            format!(
                "[{}]",
                (1..=100)
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            )
        );
    }

    #[test]
    fn encode_errors_say_what_and_where() {
        let lua = lua();
        let cases = [
            ("local t = {} t.self = t return json.encode(t)", "cycle"),
            ("local t = {} t[1] = {t} return json.encode(t)", "cycle"),
            ("return json.encode(0/0)", "NaN"),
            ("return json.encode({x = math.huge})", "inf"),
            ("return json.encode({1, 2, nil, 4})", "key 3 is missing below key 4"),
            ("return json.encode({[2] = 'b'})", "key 1 is missing below key 2"),
            ("return json.encode({[0] = 'z'})", "array key 0"),
            ("return json.encode({1, 2, x = 3})", "key \"x\""),
            ("return json.encode({x = 1, [5] = 2})", "mixes integer and string keys"),
            ("return json.encode({[1.5] = 1})", "key 1.5 is not a string"),
            ("return json.encode({[true] = 1})", "a boolean is not a string"),
            ("return json.encode(print)", "cannot encode a function"),
            ("return json.encode({f = coroutine.create(print)})", "cannot encode a thread"),
            ("return json.encode('\\255')", "not valid UTF-8"),
            ("return json.encode({['\\255'] = 1})", "key is not valid UTF-8"),
            ("local t = {} local c = t for i = 1, 1001 do c[1] = {} c = c[1] end return json.encode(t)", "deeper than 1000"),
        ];
        for (code, expected) in cases {
            let error = encode_error(&lua, code);
            assert!(error.contains(expected), "{code}: {error}");
            assert!(error.contains("json.encode: "), "{code}: {error}");
        }
        // The VM is intact after errors.
        let text: String = eval(&lua, "return json.encode({ok = true})");
        assert_eq!(text, r#"{"ok":true}"#);
    }

    #[test]
    fn decodes_values() {
        let lua = lua();
        let checks = [
            (r#"'{"a": [1, 2.5, "x", true, false, null], "b": {}}'"#, "local v = ...; return v.a[1] == 1 and math.type(v.a[1]) == 'integer' and v.a[2] == 2.5 and v.a[3] == 'x' and v.a[4] == true and v.a[5] == false and v.a[6] == json.null and #v.a == 6 and next(v.b) == nil"),
            ("'-0'", "local v = ...; return math.type(v) == 'float' and 1/v < 0"),
            ("'9223372036854775807'", "local v = ...; return v == math.maxinteger and math.type(v) == 'integer'"),
            ("'-9223372036854775808'", "local v = ...; return v == math.mininteger"),
            ("'9223372036854775808'", "local v = ...; return math.type(v) == 'float'"),
            ("'1E3'", "local v = ...; return v == 1000.0 and math.type(v) == 'float'"),
            ("'1e400'", "local v = ...; return v == math.huge"),
            (r#"'"\\u00e9\\ud83d\\ude00\\n\\/\\u0000"'"#, "local v = ...; return v == 'é😀\\n/\\0'"),
            (r#"' \t\r\n"x" '"#, "local v = ...; return v == 'x'"),
            (r#"'{"k": 1, "k": 2}'"#, "local v = ...; return v.k == 2"),
            ("'[]'", "local v = ...; return getmetatable(v) == json.array_mt and json.encode(v) == '[]'"),
        ];
        for (input, check) in checks {
            let ok: bool = eval(
                &lua,
                &format!("return (function(...) {check} end)(json.decode({input}))"),
            );
            assert!(ok, "{input}: {check}");
        }
    }

    #[test]
    fn decodes_tables_larger_than_the_gathered_part() {
        let lua = lua();
        let ok: bool = eval(
            &lua,
            r#"
            for _, n in ipairs({255, 256, 257, 1000}) do
                local items, members = {}, {}
                for i = 1, n do
                    items[i] = tostring(i)
                    members[i] = string.format('"k%d": %d', i, i)
                end
                local array = json.decode("[" .. table.concat(items, ",") .. "]")
                assert(#array == n and array[1] == 1 and array[n] == n, "array of " .. n)
                assert(getmetatable(array) == json.array_mt)
                local object = json.decode("{" .. table.concat(members, ",") .. ', "k10": "last"}')
                local count = 0
                for _ in pairs(object) do count = count + 1 end
                assert(count == n and object.k1 == 1 and object["k" .. n] == (n == 10 and "last" or n), "object of " .. n)
                assert(object.k10 == "last", "a repeated key keeps its last value")
            end
            return true
            "#,
        );
        assert!(ok);
    }

    #[test]
    fn decode_errors_name_the_byte() {
        let lua = lua();
        let cases = [
            ("", "unexpected end of input at byte 1"),
            ("[1,]", "unexpected character at byte 4"),
            ("{\"a\":1,}", "expected a string key at byte 8"),
            ("{'a':1}", "expected a string key at byte 2"),
            ("01", "leading zero in a number at byte 2"),
            ("1.", "invalid number at byte 3"),
            ("-", "invalid number at byte 2"),
            ("+1", "unexpected character at byte 1"),
            ("NaN", "unexpected character at byte 1"),
            ("[1 2]", "expected ',' or ']' at byte 4"),
            ("tru", "invalid literal at byte 1"),
            ("\"abc", "unterminated string at byte 1"),
            ("\"a\\qb\"", "invalid escape at byte 3"),
            ("\"\\ud800\"", "lone surrogate"),
            ("\"\\udc00\"", "lone surrogate"),
            ("\"\\ud800\\u0041\"", "lone surrogate"),
            ("\"\\u12g4\"", "invalid \\u escape"),
            ("\"a\tb\"", "control character in a string at byte 3"),
            ("[1] x", "unexpected text after the value at byte 5"),
            ("/* c */ 1", "unexpected character at byte 1"),
            ("\"\u{0}\"", "control character"),
        ];
        for (input, expected) in cases {
            lua.globals().set("input", input).unwrap();
            let (value, error): (Value, String) = eval(&lua, "return json.decode(input)");
            assert!(value.is_nil(), "{input}");
            assert!(error.contains(expected), "{input}: {error}");
        }
        let invalid_utf8 = lua.create_string(b"[\"a\xff\"]").unwrap();
        lua.globals().set("input", invalid_utf8).unwrap();
        let (_, error): (Value, String) = eval(&lua, "return json.decode(input)");
        assert_eq!(error, "json.decode: invalid UTF-8 at byte 4");
        let deep = "[".repeat(1001) + &"]".repeat(1001);
        lua.globals().set("input", deep).unwrap();
        let (_, error): (Value, String) = eval(&lua, "return json.decode(input)");
        assert!(error.contains("nesting too deep"), "{error}");
        let fits = "[".repeat(1000) + &"]".repeat(1000);
        lua.globals().set("input", fits).unwrap();
        let ok: bool = eval(&lua, "return type(json.decode(input)) == 'table'");
        assert!(ok);
        assert!(
            encode_error(&lua, "return json.decode(42)").contains("expected a string, got number")
        );
    }

    #[test]
    fn round_trips() {
        let lua = lua();
        let ok: bool = eval(
            &lua,
            r#"
            local function same(a, b)
                if type(a) ~= type(b) then return false end
                if type(a) ~= 'table' then return a == b and math.type(a) == math.type(b) end
                for k, v in pairs(a) do if not same(v, b[k]) then return false end end
                for k in pairs(b) do if a[k] == nil then return false end end
                return true
            end
            local seed = 1
            local function random(n) seed = (seed * 1103515245 + 12345) % 2147483648 return seed % n end
            local function value(depth)
                local kind = random(depth > 3 and 5 or 7)
                if kind == 0 then return random(1000) - 500
                elseif kind == 1 then return (random(100000) - 50000) / 7
                elseif kind == 2 then
                    local bytes = {}
                    for i = 1, random(12) do bytes[i] = utf8.char(random(3) == 0 and random(0x10FFFF - 0xE000) + 0xE000 or random(128)) end
                    return table.concat(bytes)
                elseif kind == 3 then return random(2) == 0
                elseif kind == 4 then return json.null
                elseif kind == 5 then
                    local t = setmetatable({}, json.array_mt)
                    for i = 1, random(5) do t[i] = value(depth + 1) end
                    return t
                else
                    local t = {}
                    for i = 1, random(5) do t["k" .. random(100)] = value(depth + 1) end
                    return t
                end
            end
            for i = 1, 2000 do
                local v = value(0)
                local text = json.encode(v)
                local back = json.decode(text)
                if not same(v, back) then error("differs: " .. text) end
            end
            return true
            "#,
        );
        assert!(ok);
    }

    #[test]
    fn every_prefix_of_a_document_is_an_error_not_a_crash() {
        let lua = lua();
        let ok: bool = eval(
            &lua,
            r#"
            local text = '{"a":[1,-2.5e3,"x\\u00e9\\ud83d\\ude00",true,false,null],"b":{"c":{}}}'
            assert(json.decode(text))
            for n = 0, #text - 1 do
                local value, err = json.decode(text:sub(1, n))
                if value ~= nil or not err:find("at byte") then error("prefix " .. n) end
            end
            return true
            "#,
        );
        assert!(ok);
    }

    #[test]
    fn random_bytes_never_crash() {
        let lua = lua();
        let ok: bool = eval(
            &lua,
            r#"
            local seed = 7
            local function random(n) seed = (seed * 1103515245 + 12345) % 2147483648 return seed % n end
            local alphabet = '{}[]:,"\\u0123456789eE.-+ tfnrl\255\0'
            for i = 1, 20000 do
                local bytes = {}
                for j = 1, random(24) do
                    local k = random(#alphabet) + 1
                    bytes[j] = alphabet:sub(k, k)
                end
                local value, err = json.decode(table.concat(bytes))
                if value == nil and type(err) ~= 'string' then error('no message') end
            end
            return true
            "#,
        );
        assert!(ok);
    }

    /// Finalizers run in the GC steps of the Lua calls decode makes; one
    /// that uses the codec must not disturb the call it interrupts.
    #[test]
    fn finalizers_that_use_the_codec_during_a_call() {
        let lua = lua();
        let ok: bool = eval(
            &lua,
            r#"
            collectgarbage("incremental", 100, 100)
            local runs = 0
            local function garbage()
                for i = 1, 200 do
                    setmetatable({}, {__gc = function()
                        runs = runs + 1
                        assert(json.encode({x = "\n" .. i}) == '{"x":"\\n' .. i .. '"}')
                        assert(json.decode('["\\u00e9\\n"]')[1] == "é\n")
                    end})
                end
            end
            local items = {}
            for i = 1, 500 do items[i] = '"line\\t' .. i .. '\\u00e9"' end
            local text = "[" .. table.concat(items, ",") .. "]"
            for _ = 1, 10 do
                garbage()
                local values = json.decode(text)
                for i = 1, 500 do
                    if values[i] ~= "line\t" .. i .. "é" then error("item " .. i .. ": " .. values[i]) end
                end
                local copy = {}
                for i = 1, 300 do copy[i] = {("x"):rep(i % 50), i} end
                garbage()
                assert(json.decode(json.encode(copy))[300][2] == 300)
            end
            collectgarbage()
            return runs > 0
            "#,
        );
        assert!(ok);
    }

    #[test]
    fn the_buffer_shrinks_after_a_large_document() {
        let lua = lua();
        let length: i64 = eval(
            &lua,
            "return #json.encode(string.rep('x', 3 * 1024 * 1024))",
        );
        assert_eq!(length, 3 * 1024 * 1024 + 2);
        let text: String = eval(&lua, "return json.encode({1})");
        assert_eq!(text, "[1]");
    }
}
