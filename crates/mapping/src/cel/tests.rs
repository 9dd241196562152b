use super::*;
use proptest::prelude::*;
use serde_json::json;

fn event(data: Json) -> scimflow_core::Event {
    scimflow_core::Event {
        id: "ev-1".into(),
        source: "hr".into(),
        kind: "hr.worker.hired".into(),
        subject: "E1".into(),
        time: Some(Utc.with_ymd_and_hms(2024, 3, 1, 8, 0, 0).unwrap()),
        data,
        traceparent: None,
    }
}

use chrono::TimeZone;

fn env() -> Env {
    let mut tables = BTreeMap::new();
    tables.insert(
        "countries".to_owned(),
        BTreeMap::from([
            ("DE".to_owned(), json!("Germany")),
            ("FR".to_owned(), json!("France")),
        ]),
    );
    Env { tables }
}

fn data() -> Json {
    json!({
        "email": "Zoe.Orsted@Example.COM", "firstName": "Zoë", "lastName": "Ørsted",
        "department": "Engineering", "status": "active", "roles": ["oncall", "dev"],
        "manager": {"email": "boss@example.com", "id": 7}, "startDate": "2024-03-01",
        "country": "DE", "empty": "", "nothing": null, "n": 42, "spaced": "  x y  "
    })
}

fn run(src: &str) -> Result<Json, EvalError> {
    let ev = event(data());
    let now = Utc.with_ymd_and_hms(2024, 6, 1, 12, 0, 0).unwrap();
    let p = compile(src, &env()).unwrap_or_else(|e| panic!("{src}: {e}"));
    p.eval(&Activation::new(&ev, None, now))
}

fn ok(src: &str) -> Json {
    run(src).unwrap_or_else(|e| panic!("{src}: {e}"))
}

fn cerr(src: &str) -> ExprError {
    compile(src, &env()).expect_err(src)
}

#[test]
fn mapping_examples() {
    assert_eq!(
        ok("lower(event.data.email)"),
        json!("zoe.orsted@example.com")
    );
    assert_eq!(ok("event.data.department != \"Contractors\""), json!(true));
    assert_eq!(
        ok("\"dept-\" + lower(event.data.department)"),
        json!("dept-engineering")
    );
    assert_eq!(ok("\"oncall\" in event.data.roles"), json!(true));
    assert_eq!(ok("\"admin\" in event.data.roles"), json!(false));
    assert_eq!(ok("event.data.status == 'active'"), json!(true));
    assert_eq!(
        ok("event.data.email.lower()"),
        json!("zoe.orsted@example.com")
    );
}

#[test]
fn variables() {
    assert_eq!(ok("event.id"), json!("ev-1"));
    assert_eq!(ok("event.type"), json!("hr.worker.hired"));
    assert_eq!(ok("event.time"), json!("2024-03-01T08:00:00Z"));
    assert_eq!(ok("now"), json!("2024-06-01T12:00:00Z"));
    assert_eq!(ok("prior"), Json::Null);
    assert_eq!(ok("event.data.manager.id"), json!(7));
    assert_eq!(ok("event.subject + '/' + event.source"), json!("E1/hr"));
    assert_eq!(ok("tables.countries.DE"), json!("Germany"));
    assert_eq!(ok("tables.countries[event.data.country]"), json!("Germany"));
    let ev = event(data());
    let prior = scimflow_core::SubjectState {
        subject: "E1".into(),
        last_event_id: "ev-0".into(),
        last_time: None,
        last_kind: "hr.worker.hired".into(),
        data: json!({"department": "Sales"}),
        recent_event_ids: vec![],
        mapping_version: String::new(),
        position: None,
    };
    let act = Activation::new(&ev, Some(&prior), Utc::now());
    let p = compile("prior.department != event.data.department", &Env::default()).unwrap();
    assert_eq!(p.eval(&act).unwrap(), json!(true));
    assert!(p.eval_bool(&act).unwrap());
}

#[test]
fn string_functions() {
    assert_eq!(ok("upper(event.data.firstName)"), json!("ZOË"));
    assert_eq!(ok("lower('')"), json!(""));
    assert_eq!(ok("trim(event.data.spaced)"), json!("x y"));
    assert_eq!(ok("trim('')"), json!(""));
    assert_eq!(ok("join(event.data.roles, ',')"), json!("oncall,dev"));
    assert_eq!(ok("join([], ',')"), json!(""));
    assert_eq!(ok("split('a,b,,c', ',')"), json!(["a", "b", "", "c"]));
    assert_eq!(ok("split('', ',')"), json!([]));
    assert_eq!(ok("replace('a-b-c', '-', '.')"), json!("a.b.c"));
    assert_eq!(ok("replace('abc', '', 'x')"), json!("abc"));
    assert_eq!(
        ok("regex_replace('Zoe  Orsted', '\\\\s+', '_')"),
        json!("Zoe_Orsted")
    );
    assert_eq!(
        ok("regex_replace('E-12345', '^E-(\\\\d+)$', '$1')"),
        json!("12345")
    );
    assert_eq!(ok("substring('Zoë Ørsted', 0, 3)"), json!("Zoë"));
    assert_eq!(ok("substring('abc', 1)"), json!("bc"));
    assert_eq!(ok("substring('abc', -5, 99)"), json!("abc"));
    assert_eq!(ok("substring('abc', 5)"), json!(""));
    assert_eq!(ok("substring('abc', 2, 1)"), json!(""));
    assert_eq!(
        ok("'abc'.startsWith('ab') && 'abc'.endsWith('bc') && 'abc'.contains('b')"),
        json!(true)
    );
    assert_eq!(
        ok("event.data.email.matches('@example\\\\.com$')"),
        json!(false)
    );
    assert_eq!(
        ok("matches(lower(event.data.email), '@example\\\\.com$')"),
        json!(true)
    );
    assert_eq!(ok("size('Zoë')"), json!(3));
    assert_eq!(ok("size(event.data.roles)"), json!(2));
    assert_eq!(ok("event.data.roles.size()"), json!(2));
    assert_eq!(
        ok("normalize_diacritics('Zoë Łukasz Ørsted')"),
        json!("Zoe Lukasz Orsted")
    );
    assert_eq!(
        ok("normalize_diacritics('Straße Æsir đ œ þ ı ﬁ')"),
        json!("Strasse AEsir d oe th i fi")
    );
    assert_eq!(ok("normalize_diacritics('')"), json!(""));
    assert_eq!(ok("lower(event.data.nothing)"), Json::Null);
    assert_eq!(ok("string(42) + string(true)"), json!("42true"));
    assert_eq!(ok("int('17') + 1"), json!(18));
    assert_eq!(ok("double('1.5')"), json!(1.5));
}

#[test]
fn coalesce_and_default_are_lazy() {
    assert_eq!(
        ok("coalesce(event.data.nope, event.data.empty, event.data.nothing, 'x')"),
        json!("x")
    );
    assert_eq!(
        ok("coalesce(event.data.manager.nope, event.data.manager.email)"),
        json!("boss@example.com")
    );
    assert_eq!(ok("coalesce(event.data.nope)"), Json::Null);
    assert_eq!(
        ok("coalesce(lower(event.data.nope), 'fallback')"),
        json!("fallback")
    );
    assert_eq!(ok("default(event.data.nope, 'd')"), json!("d"));
    assert_eq!(ok("default(event.data.nothing, 'd')"), json!("d"));
    assert_eq!(ok("default(event.data.empty, 'd')"), json!(""));
    assert_eq!(ok("default(prior.department, 'none')"), json!("none"));
    // a type error is not swallowed
    let e = run("coalesce(lower(event.data.n), 'x')").unwrap_err();
    assert!(!e.missing_field);
}

#[test]
fn lookups() {
    assert_eq!(
        ok("lookup('countries', event.data.country)"),
        json!("Germany")
    );
    assert_eq!(ok("lookup('countries', 'XX', 'Unknown')"), json!("Unknown"));
    let e = run("lookup('countries', 'XX')").unwrap_err();
    assert!(e.missing_field, "{e}");
    assert_eq!(
        ok("default(lookup('countries', 'XX'), 'n/a')"),
        json!("n/a")
    );
}

#[test]
fn dates() {
    assert_eq!(
        ok("format_date(event.data.startDate, '%d.%m.%Y')"),
        json!("01.03.2024")
    );
    assert_eq!(
        ok("format_date(event.time, '%Y-%m-%dT%H:%M')"),
        json!("2024-03-01T08:00")
    );
    assert_eq!(
        ok("format_date('2024-03-01T10:00:00+02:00', '%H')"),
        json!("08")
    );
    assert_eq!(
        ok("parse_date('01.03.2024', '%d.%m.%Y')"),
        json!("2024-03-01T00:00:00Z")
    );
    assert_eq!(
        ok("parse_date('2024-03-01')"),
        json!("2024-03-01T00:00:00Z")
    );
    assert_eq!(
        ok("add_days(event.data.startDate, 30)"),
        json!("2024-03-31T00:00:00Z")
    );
    assert_eq!(
        ok("add_days(event.time, -1)"),
        json!("2024-02-29T08:00:00Z")
    );
    assert_eq!(
        ok("event.time + duration('24h')"),
        json!("2024-03-02T08:00:00Z")
    );
    assert_eq!(ok("now - event.time > duration('720h')"), json!(true));
    assert_eq!(ok("duration('1h30m')"), json!(5400));
    assert_eq!(ok("timestamp('2024-01-01T00:00:00Z') < now"), json!(true));
    let e = run("parse_date('not a date')").unwrap_err();
    assert!(
        !e.missing_field && e.message().contains("parse_date"),
        "{e}"
    );
}

#[test]
fn macros_and_operators() {
    assert_eq!(ok("has(event.data.email)"), json!(true));
    assert_eq!(ok("has(event.data.nope)"), json!(false));
    assert_eq!(ok("has(event.data.nope.deeper)"), json!(false));
    assert_eq!(ok("event.data.roles.exists(r, r == 'dev')"), json!(true));
    assert_eq!(ok("event.data.roles.all(r, size(r) > 2)"), json!(true));
    assert_eq!(
        ok("event.data.roles.map(r, upper(r))"),
        json!(["ONCALL", "DEV"])
    );
    assert_eq!(
        ok("event.data.roles.filter(r, r.startsWith('on'))"),
        json!(["oncall"])
    );
    assert_eq!(ok("event.data.n > 40 ? 'big' : 'small'"), json!("big"));
    assert_eq!(ok("event.data.n * 2 + 1"), json!(85));
    assert_eq!(ok("event.data.n == 42.0"), json!(true));
    assert_eq!(
        ok("{'a': event.data.n, 'b': [1, 'x', null]}"),
        json!({"a": 42, "b": [1, "x", null]})
    );
    assert_eq!(ok("event.data.roles[0]"), json!("oncall"));
    assert_eq!(ok("false && event.data.nope == 1"), json!(false));
    assert_eq!(ok("event.data.nope == 1 || true"), json!(true));
}

#[test]
fn missing_field_versus_type_error() {
    let e = run("event.data.nope").unwrap_err();
    assert!(e.missing_field);
    assert!(e.message().contains("event.data.nope"), "{e}");
    let e = run("event.data.manager.nope").unwrap_err();
    assert!(e.missing_field);
    let e = run("event.data.roles[5]").unwrap_err();
    assert!(e.missing_field);
    let e = run("lower(event.data.n)").unwrap_err();
    assert!(!e.missing_field);
    assert!(
        e.message().contains("lower") && e.message().contains("int"),
        "{e}"
    );
    let e = run("event.data.email.foo").unwrap_err();
    assert!(!e.missing_field, "{e}");
    let e = run("event.data.n + 'x'").unwrap_err();
    assert!(
        !e.missing_field && e.message().contains("int and string"),
        "{e}"
    );
    let e = run("event.data.n / 0").unwrap_err();
    assert!(!e.missing_field);
}

#[test]
fn compile_errors_point_at_the_token() {
    let e = cerr("lowr(event.data.email)");
    assert_eq!(e.offset, 0);
    assert!(e.message.contains("unknown function `lowr`"));
    assert!(
        e.hint.as_deref().unwrap().contains("did you mean `lower`"),
        "{e}"
    );
    let e = cerr("'Zoë-' + lowr(event.data.email)");
    assert_eq!(e.offset, 9, "{e}");
    let e = cerr("lower(event.data.a, 'x')");
    assert!(e.message.contains("takes 1 argument"), "{e}");
    assert!(e.hint.unwrap().contains("lower(s)"));
    let e = cerr("evnt.data.email");
    assert_eq!(e.offset, 0);
    assert!(e.hint.unwrap().contains("did you mean `event`"));
    let e = cerr("'x' + email");
    assert_eq!(e.offset, 6, "{e}");
    let e = cerr("tables.countrys.DE");
    assert!(e.message.contains("unknown table `countrys`"));
    assert!(e.hint.unwrap().contains("did you mean `countries`"));
    let e = cerr("lookup('nope', 'x')");
    assert_eq!(e.offset, 7, "{e}");
    let e = cerr("lower(42)");
    assert_eq!(e.offset, 6);
    assert!(e.message.contains("must be a string, got int"), "{e}");
    assert!(cerr("upper(true)").message.contains("got bool"));
    assert!(cerr("substring('abc', 'x')").message.contains("an int"));
    assert!(cerr("join('abc', ',')").message.contains("a list"));
    let e = cerr("regex_replace(event.data.a, '(', '')");
    assert!(e.message.contains("invalid regular expression"), "{e}");
    assert_eq!(e.offset, 28);
    assert!(cerr("format_date(now, '%Q')")
        .message
        .contains("invalid date format"));
    assert!(cerr("duration('soon')")
        .message
        .contains("invalid duration"));
    let e = cerr("event.data.email ==");
    assert!(e.message.starts_with("syntax error"), "{e}");
    assert_eq!(e.offset, 19, "{e}");
    let e = cerr("lower(event.data.a");
    assert!(e.message.starts_with("syntax error"));
    assert!(cerr("").message.contains("syntax error"));
}

#[test]
fn program_is_send_sync_and_keeps_source() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Program>();
    let p = compile("lower(event.data.email)", &env()).unwrap();
    assert_eq!(p.source(), "lower(event.data.email)");
}

#[test]
fn closest_name() {
    assert_eq!(closest("lowr", Func::names().into_iter()), Some("lower"));
    assert_eq!(
        closest("formatdate", Func::names().into_iter()),
        Some("format_date")
    );
    assert_eq!(closest("zzzzzz", Func::names().into_iter()), None);
}

fn arb_json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        ".{0,8}".prop_map(Json::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
            prop::collection::btree_map("[a-z]{1,3}|email|roles|manager|n", inner, 0..5)
                .prop_map(|m| Json::Object(m.into_iter().collect())),
        ]
    })
}

const EXPRS: &[&str] = &[
    "lower(event.data.email)",
    "coalesce(event.data.a, event.data.b, 'x')",
    "join(event.data.roles, ',')",
    "substring(event.data.a, event.data.n, 3)",
    "event.data.n * 2 + 1",
    "format_date(event.data.a, '%Y')",
    "add_days(event.data.a, event.data.n)",
    "\"oncall\" in event.data.roles",
    "event.data.roles.map(r, upper(r))",
    "size(event.data.manager) > 1 ? event.data.manager.a : event.data.b",
    "normalize_diacritics(event.data.a) + trim(event.data.b)",
    "regex_replace(event.data.a, '[aeiou]', '_')",
    "split(event.data.a, event.data.b)",
    "int(event.data.a) - double(event.data.b)",
    "lookup('countries', event.data.a, 'none')",
    "event.data.a == event.data.b",
    "event.data.roles[event.data.n]",
    "event.data",
];

proptest! {
    #[test]
    fn compile_never_panics(src in ".{0,64}") {
        let _ = compile(&src, &env());
    }

    #[test]
    fn compile_never_panics_on_cel_like_input(src in "[a-z_.()\\[\\]'\" +,<=!?:0-9{}-]{0,48}") {
        let _ = compile(&src, &env());
    }

    #[test]
    fn eval_never_panics(data in arb_json()) {
        let ev = event(data);
        let act = Activation::new(&ev, None, Utc::now());
        for src in EXPRS {
            let p = compile(src, &env()).unwrap();
            let _ = p.eval(&act);
        }
    }
}
