//! Issue 24, copies: an image copied to other regions (`regions`, `export`), each copy its own
//! state record `image.NAME@<region>` made by export → copy → import, references from a region
//! of `regions` resolved to the copy there, regions added and removed, and a kill at every step
//! of a copy followed by a second apply leaving exactly one image per region (counted in each
//! region's emulator, the independent observer).

use kiln::emulator::RunningEmulator;
use kiln::oci::object_storage::ObjectStorage;

use crate::support::{self, Project, COMPARTMENT};

pub(crate) const PHX: &str = "us-phoenix-1";
pub(crate) const FRA: &str = "eu-frankfurt-1";
const BUCKET: &str = "kiln-images";

/// Three regions served together (the home region is `p`'s, us-ashburn-1) and the manifest
/// header reaching them; the export bucket made in the home region only.
pub(crate) async fn three_regions() -> (Project, RunningEmulator, RunningEmulator, String) {
    let p = Project::new(support::config(0.0)).await;
    let (phx, _) = support::second_region(&p, PHX).await;
    let (fra, _) = support::second_region(&p, FRA).await;
    let header = p.header().replace(
        "[defaults]",
        &format!(
            "endpoints = {{ {PHX} = \"{}\", {FRA} = \"{}\" }}\n\n[defaults]",
            phx.url(),
            fra.url()
        ),
    );
    let ns = p.emu.fixtures().namespace;
    ObjectStorage::new(support::client(&p.emu))
        .create_bucket(&ns, BUCKET, COMPARTMENT)
        .await
        .expect("the export bucket is made");
    (p, phx, fra, header)
}

/// The golden image, copied to `regions`, and a fleet of `count` in each region listed in
/// `fleets` (besides the home region's), launched from `image.golden`.
pub(crate) fn manifest(
    p: &Project,
    header: &str,
    regions: &[&str],
    fleets: &[(&str, &RunningEmulator)],
) -> String {
    let ns = p.emu.fixtures().namespace;
    let list: Vec<String> = regions.iter().map(|r| format!("\"{r}\"")).collect();
    let mut m = format!(
        "{header}[instance.builder]\n\n\
         [image.golden]\nfrom_instance = \"instance.builder\"\nregions = [{}]\n\
         export = {{ namespace = \"{ns}\", bucket = \"{BUCKET}\" }}\n\n\
         [instance.web]\ncount = 1\nsource = {{ image = \"image.golden\" }}\n\n",
        list.join(", ")
    );
    for (region, emu) in fleets {
        let f = emu.fixtures();
        let name = &region[..2];
        m.push_str(&format!(
            "[instance.web_{name}]\ncount = 1\nregion = \"{region}\"\navailability_domain = \"{}\"\nsubnet = \"{}\"\nsource = {{ image = \"image.golden\" }}\n\n",
            f.availability_domains[0], f.public_subnet_id
        ));
    }
    m
}

/// The custom images an emulator holds that are not DELETED: (id, display name).
pub(crate) fn images(emu: &RunningEmulator) -> Vec<(String, String)> {
    emu.snapshot()
        .images
        .values()
        .filter(|r| r.state() != "DELETED")
        .map(|r| (r.id().to_string(), r.str("displayName").to_string()))
        .collect()
}

/// The image ids the emulator's live instances were launched from.
pub(crate) fn launched_from(emu: &RunningEmulator) -> Vec<String> {
    emu.snapshot()
        .instances
        .values()
        .filter(|r| r.state() != "TERMINATED")
        .map(|r| r.body["imageId"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn objects(emu: &RunningEmulator) -> Vec<String> {
    emu.snapshot()
        .buckets
        .get(BUCKET)
        .map(|b| b.objects.keys().cloned().collect())
        .unwrap_or_default()
}

pub(crate) async fn plan_is_clean(p: &Project) {
    let plan = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(plan.code, 0, "a second plan is clean: {plan:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_with_two_copies_serves_fleets_in_three_regions_and_a_second_plan_is_clean() {
    let (p, phx, fra, header) = three_regions().await;
    std::fs::write(
        p.path().join("kiln.toml"),
        manifest(&p, &header, &[PHX, "fra"], &[(PHX, &phx), (FRA, &fra)]),
    )
    .unwrap();
    let out = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let (home, west, euro) = (images(&p.emu), images(&phx), images(&fra));
    assert_eq!(
        (home.len(), west.len(), euro.len()),
        (1, 1, 1),
        "one image per region: {home:?} {west:?} {euro:?}"
    );
    assert_eq!(west[0].1, "golden", "a copy keeps the display name");
    assert!(west[0].0.contains(".phx.") && euro[0].0.contains(".fra."));
    // Each region's fleet was launched from the copy in its region.
    assert!(launched_from(&p.emu).contains(&home[0].0));
    assert_eq!(launched_from(&phx), vec![west[0].0.clone()]);
    assert_eq!(launched_from(&fra), vec![euro[0].0.clone()]);
    // The exports are gone once every copy is AVAILABLE; the target buckets were made.
    assert_eq!(objects(&p.emu), Vec::<String>::new());
    assert_eq!(objects(&phx), Vec::<String>::new());
    assert!(fra.snapshot().buckets.contains_key(BUCKET));
    // One state record per copy; `kiln output` names every region's id.
    let state = support::stored_state(p.path()).await.unwrap().unwrap();
    assert_eq!(
        state.resources[&format!("image.golden@{PHX}")]
            .id
            .as_deref(),
        Some(west[0].0.as_str())
    );
    let json = p.kiln(&["output", "--json"]).await;
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let ids = &v["image.golden"]["ids"];
    assert_eq!(ids["us-ashburn-1"], home[0].0.as_str(), "{ids}");
    assert_eq!(ids[PHX], west[0].0.as_str(), "{ids}");
    assert_eq!(ids[FRA], euro[0].0.as_str(), "{ids}");
    let text = p.kiln(&["output", "image.golden"]).await;
    assert!(
        text.stdout.contains(&format!("{PHX} {}", west[0].0)),
        "{text:?}"
    );
    plan_is_clean(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_region_copies_only_to_it_and_removing_one_deletes_only_that_copy() {
    let (p, phx, fra, header) = three_regions().await;
    let write = |m: String| std::fs::write(p.path().join("kiln.toml"), m).unwrap();
    write(manifest(&p, &header, &[PHX], &[]));
    let out = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let west = images(&phx);
    assert_eq!(
        (images(&p.emu).len(), west.len(), images(&fra).len()),
        (1, 1, 0)
    );

    write(manifest(&p, &header, &[PHX, FRA], &[]));
    let plan = p.kiln(&["plan"]).await;
    assert!(
        plan.stdout.contains(&format!("image.golden@{FRA}")),
        "{plan:?}"
    );
    assert!(
        !plan.stdout.contains(&format!("image.golden@{PHX}")),
        "the phx copy is not touched: {plan:?}"
    );
    let out = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(images(&phx), west, "the phx copy is the same image");
    assert_eq!(images(&fra).len(), 1);
    plan_is_clean(&p).await;

    let euro = images(&fra);
    write(manifest(&p, &header, &[FRA], &[]));
    let out = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(images(&phx), Vec::new(), "the phx copy is deleted");
    assert_eq!(images(&fra), euro, "the fra copy stays");
    assert_eq!(images(&p.emu).len(), 1, "the image stays");
    plan_is_clean(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_at_every_step_of_a_copy_then_an_apply_leaves_one_image_per_region() {
    // Each point is a process death at one crossing of an OCI request or answer (the first,
    // unless `N*off->`): the export, the bucket, the copy and its work request, the import
    // (CreateImage's first crossing is the capture of the image itself), the clean-up.
    let mut points = Vec::new();
    for op in [
        "ExportImage",
        "CreateBucket",
        "CopyObject",
        "GetObjectStorageWorkRequest",
        "DeleteObject",
    ] {
        for side in ["request", "response"] {
            points.push(format!("oci.{side}.{op}=return(abort)"));
        }
    }
    for n in [1, 2] {
        for side in ["request", "response"] {
            points.push(format!("oci.{side}.CreateImage={n}*off->1*return(abort)"));
        }
    }
    for point in points {
        let (p, phx, fra, header) = three_regions().await;
        std::fs::write(
            p.path().join("kiln.toml"),
            manifest(&p, &header, &[PHX, FRA], &[(PHX, &phx)]),
        )
        .unwrap();
        let killed = p
            .kiln_faulted(&point, &["apply", "--auto-approve", "--parallelism", "1"])
            .await;
        assert_ne!(killed.code, 0, "{point}: the apply died: {killed:?}");
        let out = p.kiln(&["apply", "--auto-approve"]).await;
        assert_eq!(out.code, 0, "{point}: the next apply converges: {out:?}");
        let counts = (images(&p.emu).len(), images(&phx).len(), images(&fra).len());
        assert_eq!(counts, (1, 1, 1), "{point}: exactly one image per region");
        assert_eq!(
            launched_from(&phx),
            vec![images(&phx)[0].0.clone()],
            "{point}"
        );
        plan_is_clean(&p).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_from_a_region_the_image_is_not_copied_to_is_refused_with_help() {
    let (p, phx, fra, header) = three_regions().await;
    std::fs::write(
        p.path().join("kiln.toml"),
        manifest(&p, &header, &[PHX], &[(PHX, &phx), (FRA, &fra)]),
    )
    .unwrap();
    let out = p.kiln(&["plan"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("cross_region_reference"), "{out:?}");
    assert!(out.stderr.contains("add it to `regions`"), "{out:?}");
    assert!(
        !out.stderr.contains("web_us"),
        "the phx fleet is fine: {out:?}"
    );
}
