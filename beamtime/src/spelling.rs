//! How near one word is to another: the one rule behind every "did you mean"
//! (bt-submit's subcommands and options, the metadata file's keys), so a typo
//! is recognised the same way wherever it is made.

/// The number of single-character insertions, deletions, substitutions and
/// swaps of two neighbours that turn `a` into `b` (optimal string alignment),
/// counted in characters, not bytes.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // rows[i][j]: the distance between a[..i] and b[..j].
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let substitution = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + substitution);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

/// The candidate nearest to `word` if it is at most `within` edits away and
/// not `word` itself; of equally near ones, the first.
pub fn nearest<'a, I>(word: &str, candidates: I, within: usize) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    candidates
        .into_iter()
        .filter(|candidate| *candidate != word)
        .map(|candidate| (edit_distance(word, candidate), candidate))
        .filter(|(distance, _)| *distance <= within)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_typo_is_one_edit() {
        for (typo, word) in [
            ("shwo", "show"),
            ("sho", "show"),
            ("showw", "show"),
            ("shaw", "show"),
            ("beamtme", "beamtime"),
            ("slurmReservaton", "slurmReservation"),
        ] {
            assert_eq!(edit_distance(typo, word), 1, "{typo}");
        }
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn the_nearest_candidate_within_reach_is_chosen() {
        let words = ["sbatch", "srun", "salloc", "show", "doctor", "watch"];
        assert_eq!(nearest("shwo", words, 1), Some("show"));
        assert_eq!(nearest("srn", words, 1), Some("srun"));
        assert_eq!(nearest("job.sh", words, 1), None);
        assert_eq!(
            nearest("show", words, 1),
            None,
            "the word itself is no typo"
        );
    }
}
