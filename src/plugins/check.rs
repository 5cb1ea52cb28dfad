//! Cheap checks of uploaded bytes before anything compiles them: the size, that they are a WebAssembly
//! component (not a core module, and not a precompiled artefact, which we never accept), that they validate,
//! and that no single function is large enough to make compiling slow.
//!
//! These run in the server process because they are linear in the input and bounded by the upload size;
//! compiling is not, and runs in [`super::compile`]'s separate process.

use wasmparser::{Parser, Payload, Validator, WasmFeatures};

use super::LoadError;

/// Upload limits checked before compiling.
#[derive(Debug, Clone, Copy)]
pub struct UploadLimits {
    /// Largest component accepted.
    pub max_component_bytes: usize,
    /// Largest single function body.
    pub max_function_bytes: usize,
}

impl From<&crate::config::PluginSettings> for UploadLimits {
    fn from(settings: &crate::config::PluginSettings) -> Self {
        Self { max_component_bytes: settings.max_component_bytes, max_function_bytes: settings.max_function_bytes }
    }
}

/// Checks `bytes` against `limits`. Returns the size of the largest function body.
///
/// # Errors
/// Too large, not a component, invalid, or a function larger than allowed.
pub fn check_component(bytes: &[u8], limits: UploadLimits) -> Result<usize, LoadError> {
    if bytes.len() > limits.max_component_bytes {
        return Err(LoadError::TooLarge { size: bytes.len(), max: limits.max_component_bytes });
    }
    if !Parser::is_component(bytes) {
        let what = if Parser::is_core_wasm(bytes) {
            "this is a core WebAssembly module; build a component (e.g. `cargo build --target wasm32-wasip2`)"
        } else if bytes.starts_with(b"\x7fELF") {
            "this looks like precompiled code; upload the .wasm component itself"
        } else {
            "the bytes do not start with the WebAssembly component header"
        };
        return Err(LoadError::NotAComponent(what.into()));
    }
    // Size first: a single huge function is what makes Cranelift take minutes, and checking it costs one
    // pass over the section headers.
    let mut largest = 0;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|error| LoadError::NotAComponent(error.to_string()))?;
        if let Payload::CodeSectionEntry(body) = payload {
            let size = body.range().len();
            largest = largest.max(size);
            if size > limits.max_function_bytes {
                return Err(LoadError::FunctionTooLarge { size, max: limits.max_function_bytes });
            }
        }
    }
    Validator::new_with_features(WasmFeatures::default())
        .validate_all(bytes)
        .map_err(|error| LoadError::NotAComponent(error.to_string()))?;
    Ok(largest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: UploadLimits = UploadLimits { max_component_bytes: 1 << 20, max_function_bytes: 64 << 10 };

    #[test]
    fn core_modules_precompiled_code_and_garbage_are_told_apart() {
        let core = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
        let error = check_component(&core, LIMITS).expect_err("core module");
        assert!(error.to_string().contains("core WebAssembly module"), "{error}");
        let error = check_component(b"\x7fELF\x02\x01\x01\0rest", LIMITS).expect_err("precompiled");
        assert!(error.to_string().contains("precompiled"), "{error}");
        let error = check_component(b"hello", LIMITS).expect_err("garbage");
        assert_eq!(error.code(), "not_a_component");
    }

    #[test]
    fn size_is_checked_before_anything_else() {
        let big = vec![0u8; LIMITS.max_component_bytes + 1];
        assert!(matches!(check_component(&big, LIMITS), Err(LoadError::TooLarge { .. })));
    }

    #[test]
    fn a_truncated_component_is_refused() {
        // The component header followed by a section that claims more bytes than there are.
        let truncated = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00, 0x01, 0xff, 0x01];
        assert!(matches!(check_component(&truncated, LIMITS), Err(LoadError::NotAComponent(_))));
    }
}
