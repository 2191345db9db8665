/**
 * `ferry completion bash|zsh`: a completion script for the verbs, their subcommands and
 * `stream`'s sub-verbs, made from the verb table (so it never lists a verb that does not exist).
 *
 *   source <(ferry completion bash)          # bash, e.g. in ~/.bashrc
 *   ferry completion zsh > "${fpath[1]}/_ferry"   # zsh
 */
import { VERBS } from './verbs';

/** First words, and what may follow each (stream's sub-verbs included). */
function table(): { first: string[]; next: Record<string, string[]> } {
  const next: Record<string, string[]> = {};
  for (const [name, v] of Object.entries(VERBS)) {
    const [a, b] = name.split(' ') as [string, string | undefined];
    if (b) (next[a] ??= []).push(b);
    else if (v.subcommands) next[a] = [...v.subcommands];
  }
  const first = [...new Set(Object.keys(VERBS).map((n) => n.split(' ')[0]!)), '--help', '--version'];
  return { first, next };
}

export function bashScript(): string {
  const { first, next } = table();
  const cases = Object.entries(next)
    .map(([verb, subs]) => `    ${verb}) COMPREPLY=($(compgen -W "${subs.join(' ')}" -- "$cur")) ;;`)
    .join('\n');
  return `# bash completion for ferry (ferry completion bash)
_ferry() {
  local cur=\${COMP_WORDS[COMP_CWORD]}
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "${first.join(' ')}" -- "$cur"))
    return
  fi
  if [ "$COMP_CWORD" -eq 2 ]; then
    case "\${COMP_WORDS[1]}" in
${cases}
    esac
  fi
}
complete -o default -F _ferry ferry
`;
}

export function zshScript(): string {
  const { first, next } = table();
  const cases = Object.entries(next)
    .map(([verb, subs]) => `      ${verb}) compadd -- ${subs.join(' ')} ;;`)
    .join('\n');
  return `#compdef ferry
# zsh completion for ferry (ferry completion zsh)
_ferry() {
  if (( CURRENT == 2 )); then
    compadd -- ${first.join(' ')}
  elif (( CURRENT == 3 )); then
    case "\${words[2]}" in
${cases}
    esac
  else
    _files
  fi
}
compdef _ferry ferry
`;
}

export async function run(argv: string[]): Promise<number> {
  const shell = argv[0];
  if (argv.length !== 1 || (shell !== 'bash' && shell !== 'zsh')) {
    process.stderr.write('usage: ferry completion bash|zsh\n');
    return argv[0] === '--help' || argv[0] === '-h' ? 0 : 2;
  }
  process.stdout.write(shell === 'bash' ? bashScript() : zshScript());
  return 0;
}
