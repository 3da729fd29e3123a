//! The status model against Kargo's behaviour (as the test double of
//! `tests/support/kargo.rs` reproduces it from Kargo's source).

use super::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1;
use k8s_openapi::jiff::Timestamp;

fn t(secs: i64) -> Time {
    Time(Timestamp::from_second(secs).unwrap())
}

const H1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const H2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

fn details(name: &str, path: &str) -> WebhookReceiverDetails {
    WebhookReceiverDetails {
        name: name.into(),
        path: path.into(),
        url: format!("https://h{path}"),
    }
}

fn synced(name: &str, hash: &str) -> SpecReceiver {
    SpecReceiver::Harbor {
        name: name.into(),
        outcome: HarborOutcome::Synced(Published {
            path: format!("/harbor/{hash}"),
            url: format!("https://h/harbor/{hash}"),
        }),
    }
}

fn failed(name: &str, cause: &str) -> SpecReceiver {
    SpecReceiver::Harbor {
        name: name.into(),
        outcome: HarborOutcome::Failed {
            cause: cause.into(),
        },
    }
}

fn unknown(name: &str) -> SpecReceiver {
    SpecReceiver::Harbor {
        name: name.into(),
        outcome: HarborOutcome::Unknown,
    }
}

fn other(name: &str) -> SpecReceiver {
    SpecReceiver::Other { name: name.into() }
}

fn status(entries: Vec<WebhookReceiverDetails>) -> ConfigStatus {
    ConfigStatus {
        webhook_receivers: entries,
        ..Default::default()
    }
}

fn observed(current: Option<&ConfigStatus>) -> Observed<'_> {
    Observed {
        wording: Wording::ProjectConfig,
        generation: Some(3),
        refresh: None,
        current,
    }
}

fn desired(current: Option<&ConfigStatus>, spec: &[SpecReceiver]) -> Option<Desired> {
    desired_status(&observed(current), spec, &t(100))
}

fn names(s: &ConfigStatus) -> Vec<&str> {
    s.webhook_receivers
        .iter()
        .map(|d| d.name.as_str())
        .collect()
}

fn cond<'a>(s: &'a ConfigStatus, type_: &str) -> Option<&'a Condition> {
    s.conditions.iter().find(|c| c.type_ == type_)
}

const MISSING: &str = "error getting Secret \"s\" in namespace \"p\": secrets \"s\" not found";

#[test]
fn nothing_of_ours_means_no_write_at_all() {
    let gh = details("gh", &format!("/github/{H1}"));
    let kargo = status(vec![gh.clone()]);
    // A GitHub-only config, with or without Kargo's entry: untouched.
    assert_eq!(desired(Some(&kargo), &[other("gh")]), None);
    assert_eq!(desired(None, &[other("gh")]), None);
    assert_eq!(desired(None, &[]), None);
    // A removed GitHub receiver's entry is Kargo's to drop.
    assert_eq!(desired(Some(&kargo), &[]), None);
}

#[test]
fn the_list_keeps_others_in_place_and_ours_in_spec_order() {
    let gh = details("gh", &format!("/github/{H1}"));
    let gl = details("gl", &format!("/gitlab/{H1}"));
    let stale_ours = details("gone", &format!("/harbor/{H1}"));
    let stale_theirs = details("old-gh", &format!("/github/{H2}"));
    // (current list, spec, resulting names)
    let cases: Vec<(Vec<WebhookReceiverDetails>, Vec<SpecReceiver>, Vec<&str>)> = vec![
        // Before, between and after others.
        (
            vec![gh.clone(), gl.clone()],
            vec![
                synced("a", H1),
                other("gh"),
                synced("b", H1),
                other("gl"),
                synced("c", H1),
            ],
            vec!["a", "gh", "b", "gl", "c"],
        ),
        // Kargo's entries kept even before Kargo wrote ours.
        (
            vec![gh.clone()],
            vec![other("gh"), synced("a", H1)],
            vec!["gh", "a"],
        ),
        // A failed Harbor receiver is left out; a removed one dropped; a
        // removed GitHub receiver's entry left to Kargo.
        (
            vec![
                stale_theirs.clone(),
                gh.clone(),
                stale_ours.clone(),
                details("a", "/harbor/x"),
            ],
            vec![other("gh"), failed("a", MISSING), synced("b", H2)],
            vec!["old-gh", "gh", "b"],
        ),
        // Unknown (forbidden, API error): its entry stays as read.
        (
            vec![details("a", &format!("/harbor/{H1}")), gh.clone()],
            vec![unknown("a"), other("gh")],
            vec!["a", "gh"],
        ),
        // Others out of spec order stay as they are; ours go before the
        // first other that follows them in the spec.
        (
            vec![gl.clone(), gh.clone()],
            vec![other("gh"), synced("a", H1), other("gl")],
            vec!["a", "gl", "gh"],
        ),
    ];
    for (list, spec, want) in cases {
        let current = status(list.clone());
        let d = desired(Some(&current), &spec).unwrap();
        assert_eq!(names(&d.status), want, "{list:?} / {spec:?}");
        // Others' entries are byte for byte as read.
        for e in &d.status.webhook_receivers {
            if !e.path.contains("/harbor/") {
                assert!(list.contains(e), "{e:?}");
            }
        }
    }
}

#[test]
fn conditions_in_kargos_words() {
    let gh = details("gh", &format!("/github/{H1}"));
    let with_gh = status(vec![gh.clone()]);
    // (wording, current, spec, Ready (status, reason, message), Reconciling?, observedGeneration)
    type Case<'a> = (
        Wording,
        Option<&'a ConfigStatus>,
        Vec<SpecReceiver>,
        (&'a str, &'a str, String),
        bool,
        Option<i64>,
    );
    let two = format!(
        "Failed to sync WebhookReceivers: [error syncing WebhookReceiver \"a\": {MISSING}, \
         error syncing WebhookReceiver \"b\": {NO_TYPE_CAUSE}]"
    );
    let cases: Vec<Case<'_>> = vec![
        (
            Wording::ProjectConfig,
            None,
            vec![synced("a", H1)],
            ("True", "Synced", "ProjectConfig is synced and ready for use".into()),
            false,
            Some(3),
        ),
        (
            Wording::ClusterConfig,
            None,
            vec![synced("a", H1)],
            ("True", "Synced", "ClusterConfig is synced and ready for use".into()),
            false,
            Some(3),
        ),
        (
            Wording::ProjectConfig,
            Some(&with_gh),
            vec![other("gh"), synced("a", H1)],
            ("True", "Synced", "ProjectConfig is synced and ready for use".into()),
            false,
            Some(3),
        ),
        (
            Wording::ProjectConfig,
            None,
            vec![failed("a", MISSING)],
            (
                "False",
                "SyncWebhookReceiversFailed",
                format!("Failed to sync WebhookReceivers: error syncing WebhookReceiver \"a\": {MISSING}"),
            ),
            true,
            None,
        ),
        (
            Wording::ClusterConfig,
            None,
            vec![failed("a", MISSING)],
            (
                "False",
                "SyncWebhookReceiversFailed",
                format!("Failed to sync webhook receivers: error syncing WebhookReceiver \"a\": {MISSING}"),
            ),
            true,
            None,
        ),
        (
            Wording::ProjectConfig,
            None,
            vec![failed("a", MISSING), SpecReceiver::Untyped { name: "b".into() }, synced("c", H1)],
            ("False", "SyncWebhookReceiversFailed", two),
            true,
            None,
        ),
        // Duplicates are dropped by the aggregate.
        (
            Wording::ProjectConfig,
            None,
            vec![failed("a", MISSING), failed("a", MISSING)],
            (
                "False",
                "SyncWebhookReceiversFailed",
                format!("Failed to sync WebhookReceivers: error syncing WebhookReceiver \"a\": {MISSING}"),
            ),
            true,
            None,
        ),
    ];
    for (wording, current, spec, (st, reason, message), reconciling, generation) in cases {
        let o = Observed {
            wording,
            ..observed(current)
        };
        let d = desired_status(&o, &spec, &t(100)).unwrap();
        assert!(d.judged);
        let ready = cond(&d.status, READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str(), &ready.message),
            (st, reason, &message)
        );
        assert_eq!(ready.observed_generation, Some(3));
        let rc = cond(&d.status, RECONCILING);
        assert_eq!(rc.is_some(), reconciling, "{spec:?}");
        if let Some(rc) = rc {
            assert_eq!(
                (rc.status.as_str(), rc.reason.as_str(), rc.message.as_str()),
                ("True", "SyncingWebhooks", "Syncing WebhookReceivers")
            );
            // First failure: [Reconciling, Ready], as Kargo appends them.
            assert_eq!(d.status.conditions[0].type_, RECONCILING);
        }
        assert_eq!(d.status.observed_generation, generation);
    }
}

#[test]
fn deferred_when_a_receiver_is_not_ours_to_judge() {
    let kargo_ready = ConfigStatus {
        conditions: vec![Condition {
            type_: READY.into(),
            status: "False".into(),
            reason: REASON_FAILED.into(),
            message: "Failed to sync WebhookReceivers: error syncing WebhookReceiver \"gh\": …"
                .into(),
            observed_generation: Some(2),
            last_transition_time: t(5),
        }],
        observed_generation: Some(1),
        ..Default::default()
    };
    // No GitHub entry (Kargo failed it), or a Harbor outcome we cannot judge.
    for spec in [
        vec![other("gh"), synced("a", H1)],
        vec![unknown("b"), synced("a", H1)],
    ] {
        let d = desired(Some(&kargo_ready), &spec).unwrap();
        assert!(!d.judged);
        assert_eq!(d.status.conditions, kargo_ready.conditions);
        assert_eq!(d.status.observed_generation, Some(1));
        assert_eq!(names(&d.status), ["a"]);
    }
}

#[test]
fn conditions_set_as_kargo_sets_them() {
    // Kargo's sequence from an earlier failure: [Reconciling, Ready] →
    // success keeps Ready's time (a replaced condition keeps it, even on a
    // False → True flip) and drops Reconciling.
    let first = desired(None, &[failed("a", MISSING)]).unwrap().status;
    assert_eq!(cond(&first, READY).unwrap().last_transition_time, t(100));
    let later = desired_status(&observed(Some(&first)), &[synced("a", H1)], &t(200))
        .unwrap()
        .status;
    let types: Vec<&str> = later.conditions.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(types, ["Ready"]);
    assert_eq!(cond(&later, READY).unwrap().last_transition_time, t(100));
    // A later failure appends Reconciling with a new time: [Ready, Reconciling].
    let again = desired_status(&observed(Some(&later)), &[failed("a", MISSING)], &t(300))
        .unwrap()
        .status;
    let types: Vec<&str> = again.conditions.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(types, ["Ready", "Reconciling"]);
    assert_eq!(
        cond(&again, RECONCILING).unwrap().last_transition_time,
        t(300)
    );
    assert_eq!(cond(&again, READY).unwrap().last_transition_time, t(100));
    // Others' conditions keep their place.
    let mut foreign = later.clone();
    foreign.conditions.insert(
        0,
        Condition {
            type_: "Healthy".into(),
            status: "True".into(),
            reason: "Other".into(),
            message: "someone else's".into(),
            observed_generation: None,
            last_transition_time: t(5),
        },
    );
    let kept = desired_status(&observed(Some(&foreign)), &[synced("a", H1)], &t(400))
        .unwrap()
        .status;
    assert_eq!(kept, foreign);
    assert_eq!(status_patch(Some(&foreign), &kept, Some("7")), None);
}

#[test]
fn removing_the_last_harbor_receiver_removes_only_its_entry() {
    let gh = details("gh", &format!("/github/{H1}"));
    let current = status(vec![gh.clone(), details("a", &format!("/harbor/{H1}"))]);
    let d = desired(Some(&current), &[other("gh")]).unwrap();
    assert_eq!(d.status.webhook_receivers, [gh]);
    // Spec empty: Kargo's "no receivers" outcome, list gone (null).
    let only = status(vec![details("a", &format!("/harbor/{H1}"))]);
    let d = desired(Some(&only), &[]).unwrap();
    assert!(d.status.webhook_receivers.is_empty());
    assert_eq!(cond(&d.status, READY).unwrap().reason, "Synced");
    let patch = status_patch(Some(&only), &d.status, None).unwrap();
    assert_eq!(patch["status"]["webhookReceivers"], Value::Null);
}

#[test]
fn the_patch_carries_only_what_differs() {
    let base = desired(None, &[synced("a", H1)]).unwrap().status;
    assert_eq!(status_patch(Some(&base), &base, Some("9")), None);
    let mut rotated = base.clone();
    rotated.webhook_receivers[0].path = format!("/harbor/{H2}");
    let p = status_patch(Some(&base), &rotated, Some("9")).unwrap();
    assert_eq!(p["metadata"]["resourceVersion"], "9");
    let keys: Vec<&String> = p["status"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["webhookReceivers"]);
    // A refresh: lastHandledRefresh alone.
    let mut o = observed(Some(&base));
    o.refresh = Some("2026-11-29T00:00:00Z");
    let refreshed = desired_status(&o, &[synced("a", H1)], &t(500))
        .unwrap()
        .status;
    let p = status_patch(Some(&base), &refreshed, None).unwrap();
    assert_eq!(
        p["status"],
        json!({"lastHandledRefresh": "2026-11-29T00:00:00Z"})
    );
    // Every condition carries Kargo's required fields (and its generation).
    let p = status_patch(None, &base, None).unwrap();
    let keys: Vec<&String> = p["status"]["conditions"][0]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    let mut want = [
        "lastTransitionTime",
        "message",
        "observedGeneration",
        "reason",
        "status",
        "type",
    ];
    want.sort_unstable();
    assert_eq!(keys, want);
}

#[test]
fn long_messages_are_cut_as_kargo_cuts_them() {
    let spec: Vec<SpecReceiver> = (0..2000)
        .map(|i| failed(&format!("receiver-{i}"), MISSING))
        .collect();
    let d = desired(None, &spec).unwrap();
    let m = &cond(&d.status, READY).unwrap().message;
    assert_eq!(m.len(), MAX_MESSAGE);
    assert!(m.ends_with(" ... (truncated)"));
}

#[test]
fn go_quoting() {
    assert_eq!(go_quote("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\x01é\"");
    assert_eq!(go_quote("harbor-wh"), "\"harbor-wh\"");
}

#[test]
fn harbor_paths() {
    assert_eq!(harbor_path(&format!("/harbor/{H1}")), Some(("", H1)));
    assert_eq!(
        harbor_path(&format!("/a/b/harbor/{H1}")),
        Some(("/a/b", H1))
    );
    assert_eq!(harbor_path(&format!("/github/{H1}")), None);
    assert_eq!(harbor_path("/harbor/short"), None);
    assert_eq!(harbor_path(&format!("/harbor/{}", "A".repeat(64))), None);
}

fn managed(manager: &str, fields: Value) -> ManagedFieldsEntry {
    ManagedFieldsEntry {
        manager: Some(manager.into()),
        operation: Some("Update".into()),
        subresource: Some("status".into()),
        fields_type: Some("FieldsV1".into()),
        fields_v1: Some(FieldsV1(fields)),
        ..Default::default()
    }
}

#[test]
fn the_list_writer_comes_from_managed_fields() {
    let list = json!({"f:status": {".": {}, "f:webhookReceivers": {}}});
    let conditions = json!({"f:status": {"f:conditions": {}}});
    let cases = [
        (vec![], ListWriter::Unknown),
        (
            vec![managed("kargo", conditions.clone())],
            ListWriter::Unknown,
        ),
        (
            vec![managed("kargo-harbor-receiver", list.clone())],
            ListWriter::Us,
        ),
        (
            vec![
                managed("kargo-harbor-receiver", conditions),
                managed("kargo", list.clone()),
            ],
            ListWriter::Other,
        ),
    ];
    for (fields, want) in cases {
        assert_eq!(
            list_writer(&fields, "kargo-harbor-receiver"),
            want,
            "{fields:?}"
        );
    }
}

#[test]
fn a_path_under_kargos_base_is_kept_only_when_it_is_kargos() {
    let ours = Published {
        path: format!("/harbor/{H2}"),
        url: format!("https://h/harbor/{H2}"),
    };
    let kargo_entry = WebhookReceiverDetails {
        name: "a".into(),
        path: format!("/kargo/harbor/{H1}"),
        url: format!("https://k.example/kargo/harbor/{H1}"),
    };
    let current = status(vec![kargo_entry.clone()]);
    let none = BTreeSet::new();
    let known = BTreeSet::from(["/kargo".to_owned()]);
    let adopted = Some(Adoption {
        published: Published {
            path: format!("/kargo/harbor/{H2}"),
            url: format!("https://k.example/kargo/harbor/{H2}"),
        },
        kargo_base: "/kargo".into(),
    });
    // (writer, known bases, result)
    let cases = [
        (ListWriter::Other, &none, adopted.clone()),
        (ListWriter::Unknown, &none, adopted.clone()),
        // Written by us: our own earlier base, unless known to be Kargo's.
        (ListWriter::Us, &none, None),
        (ListWriter::Us, &known, adopted.clone()),
    ];
    for (writer, known, want) in cases {
        assert_eq!(
            published_elsewhere(Some(&current), "a", &ours, "", writer, known),
            want,
            "{writer:?}"
        );
    }
    // Under our own base: nothing to adopt.
    let same = status(vec![details("a", &format!("/harbor/{H1}"))]);
    assert_eq!(
        published_elsewhere(Some(&same), "a", &ours, "", ListWriter::Other, &none),
        None
    );
    // Kargo's other entries say where it publishes.
    let with_gh = status(vec![
        details("gh", &format!("/kargo/github/{H1}")),
        kargo_entry,
    ]);
    assert_eq!(kargo_bases(Some(&with_gh)), known);
}

#[test]
fn events_on_transitions_only() {
    let reasons = |e: Vec<EventSpec>| e.into_iter().map(|e| e.reason).collect::<Vec<_>>();
    let spec = [synced("a", H1), failed("b", MISSING), other("gh")];
    assert_eq!(
        reasons(transition_events(None, &spec)),
        ["ReceiverReady", "ReceiverNotReady"]
    );
    // Once published (and the failure in the Ready message), the same
    // outcomes emit nothing.
    let judged = [synced("a", H1), failed("b", MISSING)];
    let published = desired(None, &judged).unwrap().status;
    assert!(transition_events(Some(&published), &judged).is_empty());
    // a fails, b becomes ready; a rotated token is announced.
    let e = transition_events(Some(&published), &[failed("a", MISSING), synced("b", H1)]);
    assert_eq!(reasons(e.clone()), ["ReceiverNotReady", "ReceiverReady"]);
    assert!(e[0].warning && !e[1].warning);
    let e = transition_events(Some(&published), &[synced("a", H2), failed("b", MISSING)]);
    assert_eq!(reasons(e), ["ReceiverReady"]);
    // Notes never carry a receiver path (a hash of the token).
    for e in transition_events(None, &spec) {
        assert!(!e.note.contains("/harbor/"), "{}", e.note);
    }
    let note = base_differs_event("a", "", "/kargo").note;
    assert!(
        note.contains("\"/kargo\"") && note.contains("\"/\""),
        "{note}"
    );
}
