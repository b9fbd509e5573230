//! Regions: ids, the 3-letter codes of Oracle's SDK table, realms and their domains, the region of
//! an availability domain or an OCID, and the Compute endpoint `https://iaas.{region}.{domain}`.
//!
//! A leaf: it knows nothing of kiln, so `manifest` (validating `region`) and `oci` (endpoints)
//! share it without depending on each other.

/// (code, region id, realm) — Oracle's `regions_definitions.py` table (commercial and government).
const REGIONS: &[(&str, &str, &str)] = &[
    ("iad", "us-ashburn-1", "oc1"),
    ("phx", "us-phoenix-1", "oc1"),
    ("sjc", "us-sanjose-1", "oc1"),
    ("ord", "us-chicago-1", "oc1"),
    ("yyz", "ca-toronto-1", "oc1"),
    ("yul", "ca-montreal-1", "oc1"),
    ("gru", "sa-saopaulo-1", "oc1"),
    ("vcp", "sa-vinhedo-1", "oc1"),
    ("scl", "sa-santiago-1", "oc1"),
    ("bog", "sa-bogota-1", "oc1"),
    ("vap", "sa-valparaiso-1", "oc1"),
    ("qro", "mx-queretaro-1", "oc1"),
    ("mty", "mx-monterrey-1", "oc1"),
    ("lhr", "uk-london-1", "oc1"),
    ("cwl", "uk-cardiff-1", "oc1"),
    ("fra", "eu-frankfurt-1", "oc1"),
    ("zrh", "eu-zurich-1", "oc1"),
    ("ams", "eu-amsterdam-1", "oc1"),
    ("arn", "eu-stockholm-1", "oc1"),
    ("cdg", "eu-paris-1", "oc1"),
    ("mrs", "eu-marseille-1", "oc1"),
    ("lin", "eu-milan-1", "oc1"),
    ("mad", "eu-madrid-1", "oc1"),
    ("jnb", "af-johannesburg-1", "oc1"),
    ("mtz", "il-jerusalem-1", "oc1"),
    ("dxb", "me-dubai-1", "oc1"),
    ("auh", "me-abudhabi-1", "oc1"),
    ("jed", "me-jeddah-1", "oc1"),
    ("ruh", "me-riyadh-1", "oc1"),
    ("bom", "ap-mumbai-1", "oc1"),
    ("hyd", "ap-hyderabad-1", "oc1"),
    ("sin", "ap-singapore-1", "oc1"),
    ("xsp", "ap-singapore-2", "oc1"),
    ("icn", "ap-seoul-1", "oc1"),
    ("yny", "ap-chuncheon-1", "oc1"),
    ("nrt", "ap-tokyo-1", "oc1"),
    ("kix", "ap-osaka-1", "oc1"),
    ("syd", "ap-sydney-1", "oc1"),
    ("mel", "ap-melbourne-1", "oc1"),
    ("lfi", "us-langley-1", "oc2"),
    ("luf", "us-luke-1", "oc2"),
    ("ric", "us-gov-ashburn-1", "oc3"),
    ("pia", "us-gov-chicago-1", "oc3"),
    ("tus", "us-gov-phoenix-1", "oc3"),
    ("ltn", "uk-gov-london-1", "oc4"),
    ("brs", "uk-gov-cardiff-1", "oc4"),
    ("nja", "ap-chiyoda-1", "oc8"),
    ("ukb", "ap-ibaraki-1", "oc8"),
];

/// Realm → second-level domain.
const REALMS: &[(&str, &str)] = &[
    ("oc1", "oraclecloud.com"),
    ("oc2", "oraclegovcloud.com"),
    ("oc3", "oraclegovcloud.com"),
    ("oc4", "oraclegovcloud.uk"),
    ("oc8", "oraclecloud8.com"),
];

#[derive(Debug, thiserror::Error, miette::Diagnostic, PartialEq)]
#[error("unknown region `{0}`")]
#[diagnostic(
    code(kiln::oci::unknown_region),
    help("use a region id such as `us-ashburn-1` or a 3-letter code such as `iad`")
)]
pub struct UnknownRegion(pub String);

/// A region id from an id or a 3-letter code (case-insensitive).
pub fn resolve(input: &str) -> Result<&'static str, UnknownRegion> {
    let lower = input.trim().to_ascii_lowercase();
    REGIONS
        .iter()
        .find(|(code, id, _)| *code == lower || *id == lower)
        .map(|(_, id, _)| *id)
        .ok_or_else(|| UnknownRegion(input.to_string()))
}

/// Every region id, for "did you mean" suggestions.
pub fn all_ids() -> impl Iterator<Item = &'static str> {
    REGIONS.iter().map(|(_, id, _)| *id)
}

/// The realm's domain for a region id (`oraclecloud.com` for unknown realms, as the SDK defaults).
pub fn domain(region: &str) -> &'static str {
    let realm = REGIONS
        .iter()
        .find(|(_, id, _)| *id == region)
        .map(|(_, _, r)| *r)
        .unwrap_or("oc1");
    REALMS
        .iter()
        .find(|(r, _)| *r == realm)
        .map(|(_, d)| *d)
        .unwrap_or("oraclecloud.com")
}

/// `https://iaas.{region}.{domain}` (a region containing a `.` is taken as a whole domain).
pub fn compute_endpoint(region: &str) -> String {
    if region.contains('.') {
        format!("https://iaas.{region}")
    } else {
        format!("https://iaas.{region}.{}", domain(region))
    }
}

/// `https://objectstorage.{region}.{domain}`.
pub fn object_storage_endpoint(region: &str) -> String {
    format!("https://objectstorage.{region}.{}", domain(region))
}

/// The region of an availability domain: `kIdk:US-ASHBURN-AD-1` → `us-ashburn-1`,
/// `utiT:SA-SAOPAULO-1-AD-1` → `sa-saopaulo-1`.
pub fn from_availability_domain(ad: &str) -> Option<&'static str> {
    let name = ad.rsplit(':').next()?.to_ascii_lowercase();
    let stem = name.rsplit_once("-ad-")?.0;
    if let Ok(id) = resolve(stem) {
        return Some(id); // `PHX-AD-1`, `us-ashburn-1-AD-1`
    }
    REGIONS
        .iter()
        .map(|(_, id, _)| *id)
        .find(|id| *id == stem || id.strip_suffix("-1") == Some(stem))
}

/// The region of an OCID's region segment: `ocid1.instance.oc1.iad.xxx` → `us-ashburn-1`.
/// Global resources (empty segment, e.g. compartments) have none.
pub fn from_ocid(ocid: &str) -> Option<&'static str> {
    let seg = ocid.split('.').nth(3)?;
    if seg.is_empty() {
        return None;
    }
    resolve(seg).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_ids_realms_and_endpoints() {
        assert_eq!(resolve("iad"), Ok("us-ashburn-1"));
        assert_eq!(resolve("PHX"), Ok("us-phoenix-1"));
        assert_eq!(resolve("fra"), Ok("eu-frankfurt-1"));
        assert_eq!(resolve("lhr"), Ok("uk-london-1"));
        assert_eq!(resolve("eu-frankfurt-1"), Ok("eu-frankfurt-1"));
        assert!(resolve("mars-1").is_err());
        assert_eq!(
            compute_endpoint("us-ashburn-1"),
            "https://iaas.us-ashburn-1.oraclecloud.com"
        );
        assert_eq!(
            compute_endpoint("uk-gov-london-1"),
            "https://iaas.uk-gov-london-1.oraclegovcloud.uk"
        );
        assert_eq!(
            object_storage_endpoint("ap-tokyo-1"),
            "https://objectstorage.ap-tokyo-1.oraclecloud.com"
        );
    }

    #[test]
    fn region_of_availability_domains_and_ocids() {
        assert_eq!(
            from_availability_domain("kIdk:US-ASHBURN-AD-1"),
            Some("us-ashburn-1")
        );
        assert_eq!(
            from_availability_domain("Uocm:PHX-AD-1"),
            Some("us-phoenix-1")
        );
        assert_eq!(
            from_availability_domain("Uocm:US-PHOENIX-AD-2"),
            Some("us-phoenix-1")
        );
        assert_eq!(
            from_availability_domain("utiT:SA-SAOPAULO-1-AD-1"),
            Some("sa-saopaulo-1")
        );
        assert_eq!(
            from_availability_domain("x:AP-MELBOURNE-1-AD-1"),
            Some("ap-melbourne-1")
        );
        assert_eq!(
            from_ocid("ocid1.instance.oc1.iad.abc"),
            Some("us-ashburn-1")
        );
        assert_eq!(
            from_ocid("ocid1.instance.oc1.eu-frankfurt-1.abc"),
            Some("eu-frankfurt-1")
        );
        assert_eq!(from_ocid("ocid1.compartment.oc1..abc"), None);
    }
}
