//! The steps of a v1 walk (the migration region: `device_state` writes, save and resume
//! loops, register reads and writes).

use super::*;

impl Walker {
    pub(super) fn v1_step(&mut self, kinds: &[&'static str], draft: &mut Draft) {
        use crate::oracle::v1 as o;
        let v1 = draft.expects[0].v1;
        let have = |k: &str| kinds.contains(&k);
        let weights: &[(&str, u64)] = &[
            ("v1_set_state", 30),
            ("v1_save", if v1 & o::SAVING != 0 { 14 } else { 2 }),
            ("v1_resume", if v1 == o::RESUMING && draft.have_capture() { 12 } else { 1 }),
            ("v1_read", 6),
            ("reset", 3),
            ("close_device", 1),
            ("config_read", 1),
            ("region_read", 1),
            ("wait", 2),
            ("v1_write", 3),
            ("config_write", 1),
            ("region_write", 1),
        ];
        let kind = self.rng.pick_weighted(weights, have, "v1_set_state");
        let field = |r: &mut Rng| {
            *r.pick(&[
                V1Field::DeviceState,
                V1Field::Reserved,
                V1Field::PendingBytes,
                V1Field::DataOffset,
                V1Field::DataSize,
            ])
        };
        let op = match kind {
            "v1_set_state" => {
                let v = match self.rng.below(12) {
                    0 => *self.rng.pick(&[5u32, 6, 7]),
                    1 => 8 | self.rng.below(5) as u32,
                    _ => self.rng.below(5) as u32,
                };
                Op::V1SetState(v)
            }
            "v1_save" => {
                let capture = if self.rng.chance(2, 3) {
                    let i = self.rng.below(CAPTURES.len() as u64) as usize;
                    Some(StreamName(CAPTURES[i].to_string()))
                } else {
                    None
                };
                Op::V1Save(V1SaveArgs {
                    append: capture.is_some() && self.rng.chance(1, 3),
                    capture,
                    via: if self.rng.chance(1, 4) { Access::Mmap } else { Access::Rw },
                    max_iterations: Some(1000),
                    once: self.rng.chance(1, 2),
                    extra_pending_reads: self.rng.below(2) as u8,
                })
            }
            "v1_resume" => {
                let have: Vec<&String> = draft.captured.iter().flatten().collect();
                let data = if have.is_empty() {
                    Source::Zeros(self.rng.range(1, 64) as u32)
                } else {
                    Source::Stream(StreamName((*self.rng.pick(&have)).clone()))
                };
                Op::V1Resume(V1ResumeArgs {
                    data,
                    mutate: self.mutation(),
                    via: if self.rng.chance(1, 4) { Access::Mmap } else { Access::Rw },
                    scribble: self.rng.chance(1, 8),
                })
            }
            "v1_read" => {
                let natural = self.rng.chance(3, 4);
                Op::V1Read(V1FieldArgs {
                    field: field(&mut self.rng),
                    value: None,
                    width: if natural { None } else { Some(*self.rng.pick(&[1u8, 2, 3, 8])) },
                    misalign: if natural { 0 } else { self.rng.below(4) as u8 },
                })
            }
            "v1_write" => {
                let f = *self.rng.pick(&[
                    V1Field::Reserved,
                    V1Field::PendingBytes,
                    V1Field::DataOffset,
                    V1Field::DataSize,
                ]);
                Op::V1Write(V1FieldArgs {
                    field: f,
                    value: Some(*self.rng.pick(&[0u64, 1, 4096, u64::MAX])),
                    width: None,
                    misalign: 0,
                })
            }
            "reset" => Op::Reset,
            "close_device" => {
                draft.push(&self.devs, Step::new(Op::CloseDevice).oracle());
                Op::Reopen
            }
            "config_read" => Op::ConfigRead(ConfigArgs {
                offset: self.rng.below(64) as u16,
                width: 4,
                value: None,
                save_as: None,
            }),
            "region_read" => Op::RegionRead(RegionArgs {
                region: RegionRef::Bar0,
                offset: 4 * self.rng.below(8),
                width: 4,
                value: None,
                via: Access::Rw,
                save_as: None,
            }),
            "wait" => Op::Wait { ms: self.rng.range(1, 10) as u16 },
            "config_write" => {
                Op::ConfigWrite(ConfigArgs { offset: 4, width: 2, value: Some(6), save_as: None })
            }
            _ => Op::RegionWrite(RegionArgs {
                region: RegionRef::Bar0,
                offset: 4 * self.rng.below(8),
                width: 4,
                value: Some(self.rng.next_u64() & 0xffff_ffff),
                via: Access::Rw,
                save_as: None,
            }),
        };
        draft.push(&self.devs, Step::new(op).oracle());
    }
}
