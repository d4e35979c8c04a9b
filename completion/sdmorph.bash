# bash completion for sdmorph: subcommands, their options, recipe files
# (.yaml, .yml, .json) and, after --model or for `info`, folders.
# Installed by `make install` into bash-completion's completions folder;
# or `source completion/sdmorph.bash`.

shopt -s extglob     # the recipe patterns below; bash-completion sets it too

_sdmorph()
{
    local cur prev cmd
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD-1]}
    cmd=${COMP_WORDS[1]}

    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=($(compgen -W "render check info tokenize import --help --version" -- "$cur"))
        return
    fi
    case $prev in
        --model)
            COMPREPLY=($(compgen -d -- "$cur")); return ;;
        -o|--output)
            COMPREPLY=($(compgen -f -X '!*.@(mp4|gif|png|rgb)' -- "$cur") $(compgen -d -- "$cur")); return ;;
        --device)
            COMPREPLY=($(compgen -W "cpu cuda cuda:0 cuda:1" -- "$cur")); return ;;
        --sampler)
            COMPREPLY=($(compgen -W "ddim euler euler_a dpmpp_2m" -- "$cur")); return ;;
        --set)
            COMPREPLY=($(compgen -S = -W "model width height steps guidance negative seed fps sampler eta karras
                batch output contact_sheet gif_palette gif_dither weighting clip_skip embeddings loop frames interp ease hold" -- "$cur"))
            compopt -o nospace 2>/dev/null
            return ;;
        --batch|--frames|--threads|--steps|--size|--seed|--progress-every)
            return ;;
    esac
    case $cmd in
        render)
            if [[ $cur == -* ]]; then
                COMPREPLY=($(compgen -W "-o --output --model --device --batch --frames --steps --size --seed
                    --sampler --set --threads --no-cuda-graphs --cudnn-benchmark --no-aoti --json
                    --progress-every -q --quiet --help" -- "$cur"))
                return
            fi ;;
        check)
            if [[ $cur == -* ]]; then
                COMPREPLY=($(compgen -W "-o --output --model --no-model --frames --steps --size --seed --sampler
                    --set -q --quiet --json --help" -- "$cur"))
                return
            fi ;;
        info)
            COMPREPLY=($(compgen -W "--help" -- "$cur") $(compgen -d -- "$cur"))
            return ;;
        tokenize)
            COMPREPLY=($(compgen -W "--model --tokens --weighting --embeddings --help" -- "$cur"))
            return ;;
        import)
            COMPREPLY=($(compgen -W "--help" -- "$cur") $(compgen -f -X '!*.png' -- "$cur") $(compgen -d -- "$cur"))
            return ;;
        *)
            return ;;
    esac
    # recipes, and folders to find them in
    COMPREPLY=($(compgen -f -X '!*.@(yaml|yml|json)' -- "$cur") $(compgen -d -- "$cur"))
}
complete -F _sdmorph sdmorph
