//! The helpers' typed errors: the text a field error shows, and the error they wrap kept as
//! their source.

use std::error::Error as _;
use std::path::PathBuf;

use crate::{
    read_credential, ApiTokenError, CredentialConfig, CredentialError, FileError, SecretConfig,
    SigningSecretError,
};

fn secret(env: Option<&str>, file: Option<&str>) -> SecretConfig {
    SecretConfig {
        id: "k".into(),
        env: env.map(str::to_owned),
        file: file.map(PathBuf::from),
        value: None,
        not_after: None,
    }
}

#[test]
fn a_missing_file_keeps_the_io_error_as_its_source() {
    let e = read_credential(&CredentialConfig {
        env: None,
        file: Some("/nonexistent/token".into()),
    })
    .expect_err("no such file");
    assert_eq!(
        e.to_string(),
        "file: cannot read /nonexistent/token: No such file or directory (os error 2)"
    );
    let CredentialError::File {
        source: FileError::Read { source: io, .. },
    } = &e
    else {
        panic!("{e:?}");
    };
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    let chain = e.source().and_then(|s| s.source()).expect("file, then io");
    assert!(chain.downcast_ref::<std::io::Error>().is_some());
}

#[test]
fn an_unset_variable_keeps_the_var_error_as_its_source() {
    let e = secret(Some("SPILLWAY_SURELY_UNSET"), None)
        .read(&spillway_providers::find("github").expect("preset").scheme)
        .expect_err("unset");
    assert_eq!(
        e.to_string(),
        "env: environment variable SPILLWAY_SURELY_UNSET is not set"
    );
    // Transparent: the credential error's own source, the VarError, comes next.
    assert!(e
        .source()
        .is_some_and(|s| s.downcast_ref::<std::env::VarError>().is_some()));
}

#[test]
fn naming_mistakes_come_before_any_read() {
    let mut inline = secret(Some("SPILLWAY_SURELY_UNSET"), None);
    inline.value = Some("whsec_x".into());
    assert!(matches!(
        inline.read(&spillway_providers::find("github").expect("preset").scheme),
        Err(SigningSecretError::Inline)
    ));
    assert!(matches!(
        secret(Some("A"), Some("/b"))
            .read(&spillway_providers::find("github").expect("preset").scheme),
        Err(SigningSecretError::Credential(CredentialError::Both))
    ));
    assert!(matches!(
        CredentialConfig::default().read_api_token(),
        Err(ApiTokenError::Credential(CredentialError::Neither))
    ));
}

#[test]
fn typed_errors_say_what_check_config_has_always_printed() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("SHORT_TOKEN", "short");
        let short = CredentialConfig {
            env: Some("SHORT_TOKEN".into()),
            file: None,
        };
        assert_eq!(
            short.read_api_token().map_err(|e| e.to_string()),
            Err("must be at least 16 characters (e.g. `openssl rand -hex 32`)".to_owned())
        );
        assert_eq!(
            secret(None, None)
                .read(&spillway_providers::find("github").expect("preset").scheme)
                .map(|s| s.id)
                .map_err(|e| e.to_string()),
            Err("set env (an environment variable) or file".to_owned())
        );
        Ok(())
    });
}

#[test]
fn a_template_error_is_the_scheme_errors_source() {
    let hmac = crate::VerifyConfig {
        scheme: "hmac".into(),
        header: Some("x-sig".into()),
        prefix: None,
        encoding: Some(crate::EncodingConfig::Hex),
        algorithm: None,
        template: Some("{nope}".into()),
        id_header: None,
        timestamp_header: None,
        timestamp_format: None,
    };
    let e = crate::resolve::build_scheme(&hmac).expect_err("unknown placeholder");
    assert!(e.to_string().starts_with("template: unknown placeholder"));
    assert!(e.source().is_some_and(|s| s
        .downcast_ref::<spillway_signature::TemplateError>()
        .is_some()));
}
