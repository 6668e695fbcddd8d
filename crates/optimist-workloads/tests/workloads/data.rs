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
    let dir = super::data_dir();
    let good = std::fs::read(dir.join(f.path)).unwrap();
    assert_eq!(sha256_hex(&good), f.sha256);
    fetch::store_verified(&tmp, f, &good).unwrap();
    assert!(fetch::is_present(&tmp, f));
    assert_eq!(read_verified(&tmp, f.path).unwrap(), good);
    // A test slice is accepted by the loaders but never stored as the
    // full file.
    let slice = std::fs::read(super::data_dir().join("mnist/t10k-labels-idx1-ubyte.gz"));
    if super::full_data_dir().is_none() {
        let slice = slice.unwrap();
        let full = data::file("mnist/t10k-labels-idx1-ubyte.gz").unwrap();
        assert!(fetch::store_verified(&tmp, full, &slice).is_err());
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

/// Every shipped slice has its recorded size and SHA-256, and is read as a
/// slice (not as the full file).
#[test]
fn shipped_slices_match_their_table() {
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/data"));
    for s in data::SLICES {
        let b = std::fs::read(dir.join(s.path)).unwrap();
        assert_eq!(b.len() as u64, s.bytes, "{}", s.path);
        assert_eq!(sha256_hex(&b), s.sha256, "{}", s.path);
        let (_, known) = data::read_known(dir, s.path).unwrap();
        assert_eq!(known.map(|k| k.sha256), Some(s.sha256), "{}", s.path);
    }
    // A slice under another file's name is refused.
    let tmp = std::env::temp_dir().join(format!("optimist-slice-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(tmp.join("mnist")).unwrap();
    for (name, from) in [
        ("t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"),
        ("t10k-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    ] {
        std::fs::copy(dir.join("mnist").join(from), tmp.join("mnist").join(name)).unwrap();
    }
    let e = data::load_idx_pair(&tmp, "mnist", "t10k", None).unwrap_err();
    assert!(matches!(e, Error::Checksum { .. }), "{e}");
    let _ = std::fs::remove_dir_all(&tmp);
}

/// The full datasets (opt-in: `OPTIMIST_DATA_DIR=<dir> cargo test -p
/// optimist-workloads -- --ignored`): every file has its published
/// checksum, and every shipped slice holds exactly the documented parts of
/// its full file.
#[test]
#[ignore = "needs the full datasets: set OPTIMIST_DATA_DIR and pass --ignored"]
fn full_data_files_and_slices() {
    let full = super::full_data_dir().expect("set OPTIMIST_DATA_DIR to the full datasets");
    for file in data::FILES {
        let b = std::fs::read(full.join(file.path)).unwrap();
        assert_eq!(b.len() as u64, file.bytes, "{}", file.path);
        assert_eq!(sha256_hex(&b), file.sha256, "{}", file.path);
    }
    let fixtures = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/data"));
    let split = optimist_workloads::image::TRAIN_SPLIT;
    for set in ["mnist", "fashion-mnist"] {
        for prefix in ["train", "t10k"] {
            let a = data::load_idx_pair(fixtures, set, prefix, None).unwrap();
            let b = data::load_idx_pair(&full, set, prefix, None).unwrap();
            let d = b.rows * b.cols;
            match a.train_items {
                Some(t) => {
                    let v = a.len() - t;
                    assert_eq!(a.labels[..t], b.labels[..t], "{set} {prefix}");
                    assert_eq!(a.labels[t..], b.labels[split..split + v], "{set} {prefix}");
                    assert_eq!(a.images[..t * d], b.images[..t * d], "{set} {prefix}");
                    assert_eq!(a.images[t * d..], b.images[split * d..(split + v) * d], "{set} {prefix}");
                }
                None => {
                    assert_eq!(a.labels[..], b.labels[..a.len()], "{set} {prefix}");
                    assert_eq!(a.images[..], b.images[..a.len() * d], "{set} {prefix}");
                }
            }
        }
    }
    let text = std::fs::read(fixtures.join("tinyshakespeare/input.txt")).unwrap();
    let full_text = std::fs::read(full.join("tinyshakespeare/input.txt")).unwrap();
    assert_eq!(text[..], full_text[..text.len()]);
}
