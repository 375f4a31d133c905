//! Tab completion for `minotaur remote`, as a pure function: given the line, the cursor and
//! what the node told the console (its commands' usage lines from `help`, its game ids, its
//! peers' names), the candidates for the word under the cursor. The prompt asks the node; this
//! module only decides.

/// What a console command's argument is, read from its usage line in `help` (`whereis ID`,
/// `ping NODE`): the node names its arguments, so a console completes commands it does not
/// know of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgKind {
    /// A game id (`ID`).
    Game,
    /// A node name (`NODE`).
    Node,
    /// Nothing to complete.
    Other,
}

/// What completion draws from.
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// Usage lines, as `help --json` lists them: `node`, `whereis ID`, `ping NODE`.
    pub usages: Vec<String>,
    /// Game ids.
    pub games: Vec<String>,
    /// Node names.
    pub nodes: Vec<String>,
}

/// Words the console itself understands, besides the node's commands.
const LOCAL: &[&str] = &["quit", "exit"];

/// Where the word under the cursor starts, and the words before it.
fn split(line: &str, pos: usize) -> (usize, Vec<&str>) {
    let head = line.get(..pos).unwrap_or(line);
    let start = head.rfind(char::is_whitespace).map_or(0, |i| {
        i + head[i..].chars().next().map_or(1, char::len_utf8)
    });
    (start, head[..start].split_whitespace().collect())
}

/// The kind of the first argument of `command`, from the usages.
pub fn arg_kind(usages: &[String], command: &str) -> ArgKind {
    usages
        .iter()
        .filter_map(|u| {
            let mut w = u.split_whitespace();
            (w.next() == Some(command)).then(|| w.next())
        })
        .map(|arg| match arg {
            Some("ID") => ArgKind::Game,
            Some("NODE") => ArgKind::Node,
            _ => ArgKind::Other,
        })
        .find(|k| *k != ArgKind::Other)
        .unwrap_or(ArgKind::Other)
}

/// What the word under the cursor needs: `Some(kind)` for an argument (so the prompt knows
/// whether to ask the node for game ids or node names), `None` for a command name.
pub fn needs(line: &str, pos: usize, usages: &[String]) -> Option<ArgKind> {
    let (_, before) = split(line, pos);
    match before.as_slice() {
        [] => None,
        [command] => Some(arg_kind(usages, command)),
        _ => Some(ArgKind::Other),
    }
}

/// The start of the word under the cursor and its completions, sorted and deduplicated:
/// command names for the first word, game ids after a command taking `ID`, node names after
/// one taking `NODE`, nothing else.
pub fn complete(line: &str, pos: usize, known: &Known) -> (usize, Vec<String>) {
    let (start, _) = split(line, pos);
    let prefix = line.get(start..pos).unwrap_or("");
    let pool: Vec<&str> = match needs(line, pos, &known.usages) {
        None => known
            .usages
            .iter()
            .filter_map(|u| u.split_whitespace().next())
            .chain(LOCAL.iter().copied())
            .collect(),
        Some(ArgKind::Game) => known.games.iter().map(String::as_str).collect(),
        Some(ArgKind::Node) => known.nodes.iter().map(String::as_str).collect(),
        Some(ArgKind::Other) => Vec::new(),
    };
    let mut out: Vec<String> = pool
        .into_iter()
        .filter(|c| c.starts_with(prefix))
        .map(String::from)
        .collect();
    out.sort();
    out.dedup();
    (start, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Known {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect();
        Known {
            usages: s(&[
                "node",
                "nodes",
                "members",
                "games",
                "whereis ID",
                "registry",
                "drain",
                "ping NODE",
                "stats",
                "version",
                "config",
                "help",
            ]),
            games: s(&["g-7f3a", "g-7f3b", "g-91c0"]),
            nodes: s(&["minotaur@10.0.1.6", "minotaur@10.0.1.7"]),
        }
    }

    #[test]
    fn the_first_word_completes_to_command_names() {
        let k = known();
        assert_eq!(
            complete("no", 2, &k),
            (0, vec!["node".into(), "nodes".into()])
        );
        assert_eq!(complete("wh", 2, &k), (0, vec!["whereis".into()]));
        assert_eq!(complete("  ve", 4, &k), (2, vec!["version".into()]));
        assert_eq!(complete("q", 1, &k), (0, vec!["quit".into()]));
        assert_eq!(complete("zz", 2, &k), (0, vec![]));
        let (start, all) = complete("", 0, &k);
        assert_eq!(start, 0);
        assert_eq!(all.len(), 14, "{all:?}");
    }

    #[test]
    fn an_id_argument_completes_to_game_ids() {
        let k = known();
        assert_eq!(
            complete("whereis g-7f", 12, &k),
            (8, vec!["g-7f3a".into(), "g-7f3b".into()])
        );
        assert_eq!(complete("whereis ", 8, &k).1.len(), 3);
        assert_eq!(complete("whereis  g-9", 12, &k), (9, vec!["g-91c0".into()]));
        // The cursor, not the end of the line, decides.
        assert_eq!(
            complete("whereis g-9 trailing", 11, &k),
            (8, vec!["g-91c0".into()])
        );
    }

    #[test]
    fn a_node_argument_completes_to_node_names() {
        let k = known();
        assert_eq!(
            complete("ping minotaur@10.0.1.7", 22, &k),
            (5, vec!["minotaur@10.0.1.7".into()])
        );
        assert_eq!(needs("ping ", 5, &k.usages), Some(ArgKind::Node));
        assert_eq!(needs("whereis x", 9, &k.usages), Some(ArgKind::Game));
        assert_eq!(needs("wh", 2, &k.usages), None);
    }

    #[test]
    fn nothing_for_commands_without_arguments_or_a_second_argument() {
        let k = known();
        assert_eq!(complete("members g", 9, &k), (8, vec![]));
        assert_eq!(complete("whereis g-7f3a g", 16, &k), (15, vec![]));
        assert_eq!(complete("frobnicate g", 12, &k), (11, vec![]));
    }
}
