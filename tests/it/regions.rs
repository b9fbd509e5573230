//! One manifest, one state, several regions: each region is its own emulator (its own ADs,
//! subnets, images and resources), reached through `[provider] endpoints`.

use crate::support::{self, Project, COMPARTMENT, OTHER_COMPARTMENT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_regions_apply_and_plan_clean_with_one_list_per_region_and_compartment() {
    let p = Project::new(support::config(0.0)).await;
    let (phx, header) = support::second_region(&p, "us-phoenix-1").await;
    let f = phx.fixtures();
    let body = format!(
        "[instance.east]\ncount = 2\n\
         [instance.west]\ncount = 2\nregion = \"phx\"\navailability_domain = \"{}\"\nsubnet = \"{}\"\nsource = {{ image = \"{}\" }}\n\
         [instance.west_other]\nregion = \"us-phoenix-1\"\ncompartment = \"{OTHER_COMPARTMENT}\"\navailability_domain = \"{}\"\nsubnet = \"{}\"\nsource = {{ image = \"{}\" }}\n",
        f.availability_domains[0],
        f.public_subnet_id,
        f.platform_images[0].id,
        f.availability_domains[1],
        f.public_subnet_id,
        f.platform_images[0].id,
    );
    std::fs::write(p.path().join("kiln.toml"), format!("{header}{body}")).unwrap();
    let out = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("regions: us-ashburn-1, us-phoenix-1"),
        "the header names the regions: {out:?}"
    );
    assert_eq!(p.live_instances().await.len(), 2, "two in us-ashburn-1");
    let west = support::client(&phx)
        .list_instances(&kiln::oci::compute::ListInstances {
            compartment_id: COMPARTMENT.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(west.len(), 2, "two in us-phoenix-1");
    assert!(west.iter().all(|i| i.id.contains(".phx.")));

    let (east_before, west_before) = (p.emu.stats(), phx.stats());
    let plan = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(plan.code, 0, "{plan:?}");
    let count = |after: &std::collections::BTreeMap<String, u64>,
                 before: &std::collections::BTreeMap<String, u64>,
                 op: &str| {
        after.get(op).copied().unwrap_or(0) - before.get(op).copied().unwrap_or(0)
    };
    let (east, west) = (p.emu.stats(), phx.stats());
    assert_eq!(count(&east, &east_before, "ListInstances"), 1, "{east:?}");
    assert_eq!(
        count(&west, &west_before, "ListInstances"),
        2,
        "one per compartment in us-phoenix-1: {west:?}"
    );
    assert_eq!(count(&east, &east_before, "GetInstance"), 0);
    assert_eq!(count(&west, &west_before, "GetInstance"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_across_regions_is_refused_at_its_span() {
    let p = Project::new(support::config(0.0)).await;
    p.write(
        "[instance.builder]\n[image.golden]\nfrom_instance = \"instance.builder\"\n\
         [instance.far]\nregion = \"eu-frankfurt-1\"\nsource = { image = \"image.golden\" }\n",
    );
    let out = p.kiln(&["validate"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("cross_region_reference"), "{out:?}");
    assert!(out.stderr.contains("in another region"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_emulator_serves_every_region_a_manifest_names() {
    let dir = tempfile::tempdir().unwrap();
    let fra = kiln::emulator::Fixtures::for_region("eu-frankfurt-1").unwrap();
    std::fs::write(
        dir.path().join("kiln.toml"),
        format!(
            "[provider]\nendpoint = \"emulator\"\n\n[defaults]\ncompartment = \"{COMPARTMENT}\"\nshape = \"VM.Standard.E4.Flex\"\nshape_config = {{ ocpus = 1, memory_in_gbs = 16 }}\nsource = {{ image_lookup = {{ os = \"Oracle Linux\", version = \"9\" }} }}\n\n\
             [instance.home]\navailability_domain = \"kIdk:US-ASHBURN-AD-1\"\nsubnet = \"{}\"\n\
             [instance.away]\nregion = \"fra\"\navailability_domain = \"{}\"\nsubnet = \"{}\"\n",
            kiln::emulator::Fixtures::for_region("us-ashburn-1")
                .unwrap()
                .public_subnet_id,
            fra.availability_domains[0],
            fra.public_subnet_id
        ),
    )
    .unwrap();
    let out = support::run_kiln(dir.path(), &["apply", "--auto-approve"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let st: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("state/default.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(st["resources"]["instance.away"]["region"], "eu-frankfurt-1");
    assert_eq!(st["resources"]["instance.home"]["region"], "us-ashburn-1");
    assert!(dir
        .path()
        .join("state/.emulator/data-eu-frankfurt-1.json")
        .exists());
    let again = support::run_kiln(dir.path(), &["plan", "--detailed-exitcode"]).await;
    assert_eq!(again.code, 0, "{again:?}");
}
