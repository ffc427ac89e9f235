//! The built-in public planet ("Earth"), shipped as the 570 bytes 1.14 ships. Used when the home
//! folder has no `planet` file; never used by tests (they generate private planets).
//! spec: vl1.md §7.4, §7.5

use weft_wire::World;

/// The serialized built-in planet.
pub const EARTH_PLANET: &[u8] = include_bytes!("../data/earth.planet");

/// The built-in planet, parsed.
pub fn earth_planet() -> World {
    // invariant: the embedded bytes are checked by the test below
    World::decode(EARTH_PLANET)
        .expect("embedded planet parses")
        .0
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_wire::WorldType;
    use weft_wire::inet::IpPort;

    // Every fact of spec §7.4, and the signature.
    #[test]
    fn embedded_planet_matches_the_spec_facts() {
        assert_eq!(EARTH_PLANET.len(), 570);
        let w = earth_planet();
        assert_eq!(w.kind, WorldType::Planet);
        assert_eq!(w.id, 149_604_618);
        assert_eq!(w.timestamp, 1_644_592_324_813);
        assert_eq!(
            hex::encode(w.updates_must_be_signed_by),
            "b8b388a469221491aa9acd66cc764cdefd56039f1067ae15e69c6fb42d7b55330e3fdaac529c0792fd7340a6aa21aba8a489fdaea44a39bf2d00659ac9c818eb"
        );
        assert!(
            w.verify(&w.updates_must_be_signed_by),
            "signed by its own key"
        );
        assert_eq!(w.to_bytes(), EARTH_PLANET);
        let roots: Vec<(String, Vec<String>)> = w
            .roots
            .iter()
            .map(|r| {
                (
                    r.identity.address().to_string(),
                    r.stable_endpoints
                        .iter()
                        .map(|e| IpPort(*e).to_string())
                        .collect(),
                )
            })
            .collect();
        let want = [
            (
                "cafe9efeb9",
                [
                    "104.194.8.134/9993",
                    "2605:9880:200:1200:30:571:e34:51/9993",
                ],
            ),
            (
                "778cde7190",
                [
                    "103.195.103.66/9993",
                    "2605:9880:400:c3:254:f2bc:a1f7:19/9993",
                ],
            ),
            (
                "62f865ae71",
                ["50.7.252.138/9993", "2001:49f0:d0db:2::2/9993"],
            ),
            (
                "cafe04eba9",
                ["84.17.53.155/9993", "2a02:6ea0:d405::9993/9993"],
            ),
        ];
        assert_eq!(roots.len(), want.len());
        for (a, w) in want {
            let found = roots
                .iter()
                .find(|(x, _)| x == a)
                .unwrap_or_else(|| panic!("root {a}"));
            assert_eq!(found.1, w.to_vec(), "{a}");
        }
        for r in &w.roots {
            assert!(
                r.identity.validate(),
                "root identity {} is valid",
                r.identity.address()
            );
        }
    }
}
