//! Issue 24, copies and versions together, with the kiln binary against one emulator per region:
//! a rebuild re-copies to every region and, with `keep = 2`, retains the previous copies there;
//! versions beyond `keep` are deleted oldest first in every region (the plan's chain, and a kill
//! after the first delete); removing a region with the fleet that used its copy deletes the
//! instance first, then the copy; a copy gets the image's `shapes` and `capabilities` in its own
//! region, so an E5 fleet launches there; a plan whose only change is to the state's image
//! versions is pending for `--detailed-exitcode`. Every count is an emulator's own listing.

use std::collections::BTreeMap;

use kiln::emulator::RunningEmulator;
use serde_json::Value;

use crate::image_copies::{
    images, launched_from, manifest, plan_is_clean, three_regions, FRA, PHX,
};
use crate::support::{self, Project};

async fn ok(p: &Project, args: &[&str]) -> support::Out {
    let out = p.kiln(args).await;
    assert_eq!(out.code, 0, "{args:?}: {out:?}");
    out
}

/// The custom images an emulator holds that are not DELETED: `kiln-version` → id.
fn versions(emu: &RunningEmulator) -> BTreeMap<u64, String> {
    emu.snapshot()
        .images
        .values()
        .filter(|r| r.state() != "DELETED")
        .filter_map(|r| {
            let v = r.body["freeformTags"]["kiln-version"]
                .as_str()?
                .parse()
                .ok()?;
            Some((v, r.id().to_string()))
        })
        .collect()
}

/// A compatibility entry as listed: shape and OCPU range.
type Entry = (String, Option<(Option<u64>, Option<u64>)>);

fn numbers(v: &BTreeMap<u64, String>) -> Vec<u64> {
    v.keys().copied().collect()
}

fn retained(state: &Value, address: &str) -> Vec<u64> {
    state["resources"][address]["retained"]
        .as_array()
        .map(|a| a.iter().map(|v| v["version"].as_u64().unwrap()).collect())
        .unwrap_or_default()
}

async fn rebuild(p: &Project) {
    support::pass_capture_cooldown(&p.emu);
    ok(p, &["apply", "--auto-approve", "--replace", "image.golden"]).await;
}

fn with_keep(m: String, keep: u64) -> String {
    m.replace("export = {", &format!("keep = {keep}\nexport = {{"))
}

/// The index in `plan`'s changes of the `action` of `address` (with OCID `id`, when given).
fn change(plan: &Value, action: &str, address: &str, id: Option<&str>) -> usize {
    plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .position(|c| {
            c["action"] == action
                && c["address"]
                    .as_str()
                    .is_some_and(|a| a.starts_with(address))
                && id.is_none_or(|id| c["id"] == id)
        })
        .unwrap_or_else(|| panic!("no {action} of {address} {id:?} in {plan:#}"))
}

fn depends_on(plan: &Value, i: usize) -> Vec<usize> {
    plan["changes"][i]["depends_on"]
        .as_array()
        .map(|a| a.iter().map(|d| d.as_u64().unwrap() as usize).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_re_copies_to_every_region_and_keep_2_retains_the_previous_copies() {
    let (p, phx, fra, header) = three_regions().await;
    let m = with_keep(manifest(&p, &header, &[PHX, FRA], &[(PHX, &phx)]), 2);
    std::fs::write(p.path().join("kiln.toml"), m).unwrap();
    ok(&p, &["apply", "--auto-approve"]).await;
    let regions = [&p.emu, &phx, &fra];
    let addresses = [
        "image.golden".to_string(),
        format!("image.golden@{PHX}"),
        format!("image.golden@{FRA}"),
    ];
    for emu in regions {
        assert_eq!(numbers(&versions(emu)), [1]);
    }

    // The rebuild: version 2 in every region, each record's version 1 retained.
    rebuild(&p).await;
    let v: Vec<BTreeMap<u64, String>> = regions.iter().map(|e| versions(e)).collect();
    let state = p.state();
    for (addr, v) in addresses.iter().zip(&v) {
        assert_eq!(
            numbers(v),
            [1, 2],
            "{addr}: the new copy made, the old one kept"
        );
        assert_eq!(state["resources"][addr]["id"], v[&2].as_str(), "{addr}");
        assert_eq!(retained(&state, addr), [1], "{addr}");
    }
    assert_eq!(
        launched_from(&phx),
        vec![v[1][&2].clone()],
        "phx runs the new copy"
    );
    plan_is_clean(&p).await;

    // A third build: version 1 goes in every region, version 2 is retained.
    rebuild(&p).await;
    let state = p.state();
    for (addr, emu) in addresses.iter().zip(regions) {
        let v = versions(emu);
        assert_eq!(numbers(&v), [2, 3], "{addr}");
        assert_eq!(retained(&state, addr), [2], "{addr}");
    }
    assert_eq!(launched_from(&phx), vec![versions(&phx)[&3].clone()]);
    plan_is_clean(&p).await;

    // The Phoenix fleet pinned to the previous version: the Phoenix copy's version 2, not the
    // home region's.
    let pinned = pin_phx(&with_keep(
        manifest(&p, &header, &[PHX, FRA], &[(PHX, &phx)]),
        2,
    ));
    std::fs::write(p.path().join("kiln.toml"), pinned).unwrap();
    ok(&p, &["apply", "--auto-approve"]).await;
    assert_eq!(
        launched_from(&phx),
        vec![versions(&phx)[&2].clone()],
        "phx runs its own copy of version 2"
    );
    plan_is_clean(&p).await;
}

/// `version = "previous"` on the Phoenix fleet of [`manifest`].
fn pin_phx(m: &str) -> String {
    let (head, tail) = m
        .split_once(&format!("region = \"{PHX}\"\n"))
        .expect("a Phoenix fleet");
    format!(
        "{head}region = \"{PHX}\"\n{}",
        tail.replacen(
            "source = { image = \"image.golden\" }",
            "source = { image = \"image.golden\", version = \"previous\" }",
            1
        )
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_beyond_keep_are_deleted_oldest_first_in_every_region() {
    let (p, phx, _fra, header) = three_regions().await;
    let write = |keep| {
        let m = with_keep(manifest(&p, &header, &[PHX], &[]), keep);
        std::fs::write(p.path().join("kiln.toml"), m).unwrap();
    };
    write(3);
    ok(&p, &["apply", "--auto-approve"]).await;
    rebuild(&p).await;
    rebuild(&p).await;
    let (home, west) = (versions(&p.emu), versions(&phx));
    assert_eq!(
        (numbers(&home), numbers(&west)),
        (vec![1, 2, 3], vec![1, 2, 3])
    );

    // `keep = 1`: versions 1 and 2 go, in each region version 1 first.
    write(1);
    let plan: Value = serde_json::from_str(&ok(&p, &["plan", "--json"]).await.stdout).unwrap();
    for (addr, v) in [
        ("image.golden", &home),
        (&format!("image.golden@{PHX}"), &west),
    ] {
        let first = change(&plan, "delete", addr, Some(&v[&1]));
        let second = change(&plan, "delete", addr, Some(&v[&2]));
        assert!(
            depends_on(&plan, second).contains(&first),
            "{addr}: version 2's delete waits for version 1's: {plan:#}"
        );
    }

    // One action at a time, killed at the second delete: the first, whichever region it was
    // in, deleted a version 1 (without the chain, the walk takes version 2's delete first).
    let killed = p
        .kiln_faulted(
            "oci.request.DeleteImage=1*off->return(abort)",
            &["apply", "--auto-approve", "--parallelism", "1"],
        )
        .await;
    assert_ne!(killed.code, 0, "{killed:?}");
    let left = [numbers(&versions(&p.emu)), numbers(&versions(&phx))];
    let mut sorted = left.to_vec();
    sorted.sort();
    assert_eq!(
        sorted,
        [vec![1, 2, 3], vec![2, 3]],
        "the oldest first: {left:?}"
    );

    ok(&p, &["apply", "--auto-approve"]).await;
    assert_eq!(numbers(&versions(&p.emu)), [3]);
    assert_eq!(numbers(&versions(&phx)), [3]);
    let state = p.state();
    assert!(retained(&state, "image.golden").is_empty());
    assert!(retained(&state, &format!("image.golden@{PHX}")).is_empty());
    plan_is_clean(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_region_with_its_fleet_deletes_the_instance_then_the_copy() {
    let (p, phx, fra, header) = three_regions().await;
    let write = |m: String| std::fs::write(p.path().join("kiln.toml"), m).unwrap();
    write(manifest(
        &p,
        &header,
        &[PHX, FRA],
        &[(PHX, &phx), (FRA, &fra)],
    ));
    ok(&p, &["apply", "--auto-approve"]).await;
    let (west, euro) = (images(&phx), images(&fra));
    assert_eq!(launched_from(&fra), vec![euro[0].0.clone()]);

    // The region removed while its fleet still refers to the image: refused at the reference.
    write(manifest(&p, &header, &[PHX], &[(PHX, &phx), (FRA, &fra)]));
    let out = p.kiln(&["plan"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("cross_region_reference")
            && out.stderr.contains("add it to `regions`")
            && out.stderr.contains("instance.web_eu"),
        "{out:?}"
    );

    // Removed with its fleet: the instance is terminated first, then the copy deleted.
    write(manifest(&p, &header, &[PHX], &[(PHX, &phx)]));
    let plan: Value = serde_json::from_str(&ok(&p, &["plan", "--json"]).await.stdout).unwrap();
    let instance = change(&plan, "delete", "instance.web_eu", None);
    let copy = change(&plan, "delete", &format!("image.golden@{FRA}"), None);
    assert!(
        depends_on(&plan, copy).contains(&instance),
        "the copy goes after its user: {plan:#}"
    );
    assert_eq!(plan["changes"].as_array().unwrap().len(), 2, "{plan:#}");
    ok(&p, &["apply", "--auto-approve"]).await;
    assert_eq!(images(&fra), Vec::new(), "the fra copy is deleted");
    assert!(launched_from(&fra).is_empty(), "its fleet is gone");
    assert_eq!(images(&phx), west, "the phx copy stays");
    assert_eq!(images(&p.emu).len(), 1, "the image stays");
    plan_is_clean(&p).await;
}

/// A region removed from an image with `keep = 2`: its copy goes with every retained version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_region_deletes_its_retained_copies_too() {
    let (p, phx, fra, header) = three_regions().await;
    let write = |regions: &[&str]| {
        let m = with_keep(manifest(&p, &header, regions, &[]), 2);
        std::fs::write(p.path().join("kiln.toml"), m).unwrap();
    };
    write(&[PHX, FRA]);
    ok(&p, &["apply", "--auto-approve"]).await;
    rebuild(&p).await;
    assert_eq!(numbers(&versions(&fra)), [1, 2]);
    write(&[PHX]);
    ok(&p, &["apply", "--auto-approve"]).await;
    assert_eq!(
        images(&fra),
        Vec::new(),
        "no version of the fra copy is left"
    );
    assert_eq!(numbers(&versions(&phx)), [1, 2], "phx keeps both");
    let state = p.state();
    assert!(
        state["resources"]
            .get(format!("image.golden@{FRA}"))
            .is_none(),
        "{state:#}"
    );
    plan_is_clean(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_has_the_images_shapes_and_capabilities_and_an_e5_fleet_launches_from_it() {
    let (p, phx, _fra, header) = three_regions().await;
    let f = phx.fixtures();
    let m = manifest(&p, &header, &[PHX], &[]).replace(
        "export = {",
        "shapes = [\"VM.Standard.E4.Flex\", { shape = \"VM.Standard.E5.Flex\", ocpus = { min = 1, max = 8 } }]\n\
         capabilities = { \"Compute.Firmware\" = \"UEFI_64\" }\nexport = {",
    ) + &format!(
        "[instance.web_e5]\nregion = \"{PHX}\"\navailability_domain = \"{}\"\nsubnet = \"{}\"\n\
         shape = \"VM.Standard.E5.Flex\"\nshape_config = {{ ocpus = 2, memory_in_gbs = 16 }}\n\
         source = {{ image = \"image.golden\" }}\n",
        f.availability_domains[0], f.public_subnet_id
    );
    std::fs::write(p.path().join("kiln.toml"), m).unwrap();
    ok(&p, &["apply", "--auto-approve"]).await;
    let copy = images(&phx)[0].0.clone();
    let client = support::client(&phx);
    let mut entries: Vec<Entry> = client
        .list_image_shapes(&copy)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.shape, e.ocpu_constraints.map(|c| (c.min, c.max))))
        .collect();
    entries.sort();
    assert_eq!(
        entries,
        vec![
            ("VM.Standard.E4.Flex".to_string(), None),
            ("VM.Standard.E5.Flex".to_string(), Some((Some(1), Some(8)))),
        ],
        "the copy's own compatibility entries"
    );
    let (schema, _) = client
        .image_capability_schema(support::COMPARTMENT, &copy)
        .await
        .unwrap()
        .expect("the copy has a capability schema");
    assert_eq!(
        schema.schema_data["Compute.Firmware"]["defaultValue"],
        "UEFI_64"
    );
    assert_eq!(
        launched_from(&phx),
        vec![copy],
        "the E5 fleet runs the copy"
    );
    plan_is_clean(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_that_changes_only_the_states_image_versions_is_pending() {
    let p = Project::new(support::config(0.0)).await;
    p.write(
        "[instance.builder]\n\n[image.golden]\nfrom_instance = \"instance.builder\"\nkeep = 2\n",
    );
    ok(&p, &["apply", "--auto-approve"]).await;
    rebuild(&p).await;
    // As a kill before the apply's last commit leaves it: the previous version still deposed.
    let path = p.path().join("state/default.json");
    let mut state = p.state();
    let record = &mut state["resources"]["image.golden"];
    record["deposed"] = record["retained"].take();
    record.as_object_mut().unwrap().remove("retained");
    // Compact: a record's attributes are kept as the text read, and a journal line is one line.
    std::fs::write(&path, serde_json::to_string(&state).unwrap()).unwrap();

    let plan = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(plan.code, 2, "a version to retain is pending: {plan:?}");
    assert!(
        plan.stdout.contains("version 1") && plan.stdout.contains("kept as a retained version"),
        "{plan:?}"
    );
    let out = ok(&p, &["apply", "--auto-approve"]).await;
    let state = p.state();
    assert_eq!(
        retained(&state, "image.golden"),
        [1],
        "{out:?} {:#}",
        state["resources"]["image.golden"]
    );
    ok(&p, &["plan", "--detailed-exitcode"]).await;

    // A retained version deleted outside kiln: dropping it from the state is pending too.
    let id = p.state()["resources"]["image.golden"]["retained"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    p.client()
        .delete_image(&id, &kiln::oci::MutationOptions::default())
        .await
        .unwrap();
    let plan = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(plan.stdout.contains("gone from OCI"), "{plan:?}");
    ok(&p, &["apply", "--auto-approve"]).await;
    assert!(retained(&p.state(), "image.golden").is_empty());
    ok(&p, &["plan", "--detailed-exitcode"]).await;
}
