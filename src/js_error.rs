//! The one place core errors become JS `Error`s: a message plus a stable `code`.

use wasm_bindgen::JsValue;

/// Result type of exported functions: errors are JS `Error` objects.
pub(crate) type JsResult<T> = Result<T, JsValue>;

/// A JS `Error` with `message`, a snake_case `code` and extra properties.
pub(crate) fn js_error(code: &str, message: &str, extra: &[(&str, JsValue)]) -> JsValue {
    let err = js_sys::Error::new(message);
    err.set_name("SmsError");
    let obj: &JsValue = err.as_ref();
    // Setting a property on a fresh Error object cannot fail.
    let _ = js_sys::Reflect::set(obj, &"code".into(), &code.into());
    for (key, value) in extra {
        let _ = js_sys::Reflect::set(obj, &(*key).into(), value);
    }
    err.into()
}
