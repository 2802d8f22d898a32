//! Template fixtures: `template-inputs/*.txt` hold a JSON context, the template and the
//! expected text, separated by lines of `---`. A new case is a new file.

use sms_core::template::render;
use sms_core::value::Value;

#[test]
fn fixtures_render_as_expected() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/template-inputs");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("fixture folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    assert!(files.len() >= 9, "fixtures missing from {dir}");
    for path in files {
        let text = std::fs::read_to_string(&path).expect("fixture");
        let parts: Vec<&str> = text.split("\n---\n").collect();
        let [context, template, expected] = parts[..] else {
            panic!("{}: want context --- template --- expected", path.display());
        };
        let data: Value = serde_json::from_str(context).expect("context JSON");
        let out = render(template, &data).expect("template compiles");
        assert_eq!(
            out.text,
            expected.strip_suffix('\n').unwrap_or(expected),
            "{}",
            path.display()
        );
    }
}
