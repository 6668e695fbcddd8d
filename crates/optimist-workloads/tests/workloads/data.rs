//! The readers and the checksum verification on local files.

use optimist_workloads::data::{self, parse_csv, parse_idx, read_verified, sha256_hex};
use optimist_workloads::{fetch, Error};

fn idx(magic: [u8; 4], dims: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut b = magic.to_vec();
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(payload);
    b
}

#[test]
fn idx_parses_and_rejects_bad_files() {
    let ok = parse_idx(&idx([0, 0, 8, 3], &[2, 2, 3], &[7; 12]), "t").unwrap();
    assert_eq!(ok.dims, vec![2, 2, 3]);
    assert_eq!(ok.data, vec![7; 12]);
    let short = parse_idx(&idx([0, 0, 8, 1], &[5], &[1, 2, 3]), "labels")
        .unwrap_err()
        .to_string();
    assert!(
        short.contains("labels") && short.contains("need 13 bytes"),
        "{short}"
    );
    let magic = parse_idx(&idx([0, 0, 0x0d, 1], &[1], &[0; 4]), "f")
        .unwrap_err()
        .to_string();
    assert!(magic.contains("magic"), "{magic}");
    assert!(parse_idx(&[0, 0], "tiny").is_err());
}

#[test]
fn csv_parses_and_names_bad_fields() {
    let rows = parse_csv("2,3,a,b\n1.5,2,0\n-1,4e2,1\n", 1, "x.csv").unwrap();
    assert_eq!(rows, vec![vec![1.5, 2.0, 0.0], vec![-1.0, 400.0, 1.0]]);
    let e = parse_csv("1,2\n3,oops\n", 0, "x.csv")
        .unwrap_err()
        .to_string();
    assert!(e.contains("x.csv:2") && e.contains("oops"), "{e}");
    let e = parse_csv("1,2\n3\n", 0, "x.csv").unwrap_err().to_string();
    assert!(e.contains("1 fields"), "{e}");
}

#[test]
fn char_tokens_use_the_sorted_byte_vocabulary() {
    let t = data::char_tokens(b"baca\n");
    assert_eq!(t.vocab, b"\nabc".to_vec());
    assert_eq!(t.tokens, vec![2, 1, 3, 1, 0]);
}

#[test]
fn checksums_are_verified_on_load_and_before_storing() {
    let tmp = std::env::temp_dir().join(format!("optimist-data-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let f = data::file("tabular/breast_cancer.csv").unwrap();
    // A file that is not the published one: rejected, and never stored.
    let wrong = b"569,30,malignant,benign\n".to_vec();
    let e = fetch::store_verified(&tmp, f, &wrong).unwrap_err();
    assert!(matches!(e, Error::Checksum { .. }), "{e}");
    assert!(!tmp.join(f.path).exists());
    assert!(!fetch::is_present(&tmp, f));
    // A damaged copy on disk is rejected when loaded.
    std::fs::create_dir_all(tmp.join("tabular")).unwrap();
    std::fs::write(tmp.join(f.path), &wrong).unwrap();
    let e = read_verified(&tmp, f.path).unwrap_err().to_string();
    assert!(
        e.contains("SHA-256") && e.contains(&sha256_hex(&wrong)),
        "{e}"
    );
    // The real file verifies and is stored in place of the damaged one.
    if let Some(dir) = super::data_dir() {
        let good = std::fs::read(dir.join(f.path)).unwrap();
        assert_eq!(sha256_hex(&good), f.sha256);
        fetch::store_verified(&tmp, f, &good).unwrap();
        assert!(fetch::is_present(&tmp, f));
        assert_eq!(read_verified(&tmp, f.path).unwrap(), good);
        // Every file of the shared data directory has the expected checksum.
        for file in data::FILES {
            let b = std::fs::read(dir.join(file.path)).unwrap();
            assert_eq!(b.len() as u64, file.bytes, "{}", file.path);
            assert_eq!(sha256_hex(&b), file.sha256, "{}", file.path);
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    // Unknown datasets are an error that lists the known ones.
    let e = fetch::select(&["cifar".to_string()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("mnist"), "{e}");
    // A missing file names the remedies.
    let e = read_verified(
        std::path::Path::new("no-such-dir"),
        "mnist/train-labels-idx1-ubyte.gz",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("optimist data fetch") && e.contains(data::DATA_DIR_ENV),
        "{e}"
    );
}
