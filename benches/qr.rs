//! Ticket issuance cost: signing a QR token, and rendering it as PNG and SVG.
//! Run: `cargo bench -p boxoffice-benches --bench qr`.

use boxoffice::auth::qr::{self, QrSigner, TicketClaim};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use secrecy::SecretString;
use std::hint::black_box;
use uuid::Uuid;

fn issuance(c: &mut Criterion) {
    let signer = QrSigner::new(("k1".into(), SecretString::from("bench-key")), vec![]);
    let claim = TicketClaim { ticket_id: Uuid::now_v7(), event_id: Uuid::now_v7() };
    let token = signer.sign(claim);
    let mut group = c.benchmark_group("qr");
    group.throughput(Throughput::Elements(1));
    group.bench_function("sign token (tickets/s)", |b| b.iter(|| black_box(signer.sign(black_box(claim)))));
    group.bench_function("verify token", |b| b.iter(|| black_box(signer.verify(black_box(&token)))));
    group.bench_function("sign + PNG base64 (tickets/s, as in a purchase response)", |b| {
        b.iter(|| black_box(qr::png_base64(&signer.sign(black_box(claim)))))
    });
    group.bench_function("SVG", |b| b.iter(|| black_box(qr::svg(black_box(&token)))));
    group.finish();
}

criterion_group!(benches, issuance);
criterion_main!(benches);
