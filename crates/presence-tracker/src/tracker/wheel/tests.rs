use super::*;

fn taken(q: &mut DueQueue<u32>, now: u64) -> Vec<(u64, u32)> {
    let mut out = Vec::new();
    q.take_due(now, &mut out);
    let mut got: Vec<(u64, u32)> = out.into_iter().map(|d| (d.at, d.user)).collect();
    got.sort_unstable();
    got
}

/// Checks the queue against a sorted list of what it should hold.
fn check(q: &DueQueue<u32>, model: &[(u64, u32)]) {
    assert_eq!(q.wheel.len(), model.len());
    assert_eq!(q.earliest(), model.first().map_or(NO_DEADLINE, |e| e.0));
    assert!(q.wheel.near.len() as u64 <= NEAR_SPAN);
    assert!(q.wheel.near.front().is_none_or(|b| !b.items.is_empty()));
}

#[test]
fn empty_queue_has_no_deadline() {
    let mut q = DueQueue::<u32>::new();
    assert_eq!(q.earliest(), NO_DEADLINE);
    assert!(taken(&mut q, 0).is_empty());
    assert!(taken(&mut q, u64::MAX).is_empty());
    assert_eq!(q.earliest(), NO_DEADLINE);
}

#[test]
fn takes_across_bucket_boundaries() {
    let mut q = DueQueue::new();
    let fine = 1 << FINE;
    // Last ms of one near bucket, first of the next, and a few more.
    for (i, at) in [fine - 1, fine, fine + 1, 3 * fine, 3 * fine - 1]
        .iter()
        .enumerate()
    {
        q.push(1_000 * fine + at, i as u32);
    }
    assert_eq!(q.earliest(), 1_000 * fine + fine - 1);
    assert!(taken(&mut q, 1_000 * fine + fine - 2).is_empty());
    assert_eq!(
        taken(&mut q, 1_000 * fine + fine - 1),
        vec![(1_000 * fine + fine - 1, 0)]
    );
    assert_eq!(q.earliest(), 1_000 * fine + fine);
    assert_eq!(
        taken(&mut q, 1_000 * fine + fine + 1),
        vec![(1_000 * fine + fine, 1), (1_000 * fine + fine + 1, 2)]
    );
    assert_eq!(q.earliest(), 1_000 * fine + 3 * fine - 1);
    assert_eq!(
        taken(&mut q, 1_000 * fine + 10 * fine),
        vec![
            (1_000 * fine + 3 * fine - 1, 4),
            (1_000 * fine + 3 * fine, 3)
        ]
    );
    assert_eq!(q.earliest(), NO_DEADLINE);
    assert!(q.wheel.near.is_empty() && q.wheel.far.is_empty());
}

#[test]
fn partial_bucket_keeps_the_rest_and_its_minimum() {
    let mut q = DueQueue::new();
    let base = 5_000 << FINE;
    assert!(taken(&mut q, base - 1).is_empty()); // the cursor, so that pushes go near
    for (i, off) in [9, 3, 7, 1, 5, 8, 2].iter().enumerate() {
        q.push(base + off, i as u32);
    }
    assert_eq!(q.wheel.near.len(), 1, "all in one bucket");
    assert_eq!(q.earliest(), base + 1);
    assert_eq!(
        taken(&mut q, base + 4),
        vec![(base + 1, 3), (base + 2, 6), (base + 3, 1)]
    );
    assert_eq!(q.earliest(), base + 5);
    assert_eq!(q.wheel.len(), 4);
    // A push behind the cursor lands in the cursor's bucket and is due at once.
    q.push(base, 9);
    assert_eq!(q.earliest(), base);
    assert_eq!(taken(&mut q, base + 5), vec![(base, 9), (base + 5, 4)]);
    assert_eq!(q.earliest(), base + 7);
}

#[test]
fn equal_times_all_come_out_together() {
    let mut q = DueQueue::new();
    for user in 0..100 {
        q.push(123_456, user);
    }
    q.push(123_457, 100);
    assert_eq!(q.earliest(), 123_456);
    let got = taken(&mut q, 123_456);
    assert_eq!(got.len(), 100);
    assert!(got.iter().all(|&(at, _)| at == 123_456));
    assert_eq!(q.earliest(), 123_457);
    assert_eq!(taken(&mut q, 123_457), vec![(123_457, 100)]);
}

#[test]
fn far_entries_cascade_and_stay_exact() {
    let mut q = DueQueue::new();
    let t0 = 1_700_000_000_000u64;
    q.push(t0, 0);
    assert_eq!(taken(&mut q, t0), vec![(t0, 0)]);
    // Near (15 s), far (1 min, 1 h) and an entry in a far bucket's first and last ms.
    let coarse = 1 << COARSE;
    let far_key = (t0 >> COARSE) + 10;
    let pushes = [
        (t0 + 15_000, 1),
        (t0 + 60_000, 2),
        (t0 + 3_600_000, 3),
        (far_key << COARSE, 4),
        ((far_key << COARSE) + coarse - 1, 5),
    ];
    let mut model: Vec<(u64, u32)> = pushes.to_vec();
    model.sort_unstable();
    for (at, user) in pushes {
        q.push(at, user);
    }
    assert!(!q.wheel.far.is_empty());
    check(&q, &model);
    // Step through time in irregular strides, comparing with the model.
    let mut now = t0;
    while !model.is_empty() {
        now += 7_919;
        let split = model.partition_point(|e| e.0 <= now);
        let due: Vec<_> = model.drain(..split).collect();
        assert_eq!(taken(&mut q, now), due, "at {now}");
        check(&q, &model);
    }
    assert!(q.wheel.near.is_empty() && q.wheel.far.is_empty());
}

#[test]
fn huge_times_saturate_without_overflow() {
    let mut q = DueQueue::new();
    q.push(u64::MAX, 1);
    q.push(u64::MAX - 1, 2);
    q.push(NO_DEADLINE - (1 << COARSE), 3);
    assert_eq!(q.earliest(), NO_DEADLINE - (1 << COARSE));
    assert!(taken(&mut q, 1_000).is_empty());
    assert_eq!(
        taken(&mut q, u64::MAX - 1),
        vec![(NO_DEADLINE - (1 << COARSE), 3), (u64::MAX - 1, 2)]
    );
    // An entry at u64::MAX is queued but reads as no deadline, as before.
    assert_eq!(q.earliest(), NO_DEADLINE);
    assert_eq!(q.wheel.len(), 1);
    // Pushes behind the (now huge) cursor are due at once, and near the end of time work.
    q.push(5, 4);
    q.push(u64::MAX - 3, 5);
    assert_eq!(q.earliest(), 5);
    assert_eq!(taken(&mut q, u64::MAX - 3), vec![(5, 4), (u64::MAX - 3, 5)]);
    assert_eq!(taken(&mut q, u64::MAX), vec![(u64::MAX, 1)]);
    assert_eq!(q.earliest(), NO_DEADLINE);
    assert_eq!(q.wheel.len(), 0);
}

#[test]
fn time_going_back_still_takes_everything_due() {
    let mut q = DueQueue::new();
    let t = 10_000_000u64;
    q.push(t, 0);
    assert_eq!(taken(&mut q, t), vec![(t, 0)]);
    // Behind the cursor: kept in the cursor's bucket, but taken at its own time.
    q.push(t - 5_000, 1);
    q.push(t - 1_000, 2);
    assert_eq!(q.earliest(), t - 5_000);
    assert_eq!(taken(&mut q, t - 3_000), vec![(t - 5_000, 1)]);
    assert_eq!(q.earliest(), t - 1_000);
    assert_eq!(taken(&mut q, t - 3_000), vec![]);
    assert_eq!(taken(&mut q, t - 1_000), vec![(t - 1_000, 2)]);
}

/// Against a sorted-list model: random pushes (some behind the clock, some far) and ticks.
#[test]
fn matches_a_model() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut q = DueQueue::new();
    let mut model: Vec<(u64, u32)> = Vec::new();
    let mut now = 1_000_000u64;
    for user in 0..20_000u32 {
        let at = match rand(10) {
            0 => now.saturating_sub(rand(5_000)),
            1..=6 => now + rand(20_000),
            7 | 8 => now + rand(300_000),
            _ => now + rand(4_000_000),
        };
        q.push(at, user);
        let i = model.partition_point(|e| *e < (at, user));
        model.insert(i, (at, user));
        if rand(20) == 0 {
            now += rand(2_000);
            let split = model.partition_point(|e| e.0 <= now);
            let due: Vec<_> = model.drain(..split).collect();
            assert_eq!(taken(&mut q, now), due, "at {now}");
        }
        check(&q, &model);
    }
    let last = model.last().map_or(now, |e| e.0);
    let all: Vec<_> = std::mem::take(&mut model);
    assert_eq!(taken(&mut q, last), all);
    check(&q, &model);
}
