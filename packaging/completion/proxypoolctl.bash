# bash completion for proxypoolctl                         -*- shell-script -*-
# Installed as /usr/share/bash-completion/completions/proxypoolctl.

_proxypoolctl()
{
    local cur prev words cword
    _init_completion || return

    local verbs="parse import add remove restore list status check refresh export tor help"
    local global="--json --user --db --config --api --api-secret --help --version"

    case $prev in
        --db|--config)
            _filedir
            return ;;
        --format)
            COMPREPLY=($(compgen -W 'json txt clash' -- "$cur"))
            return ;;
        --state)
            COMPREPLY=($(compgen -W 'healthy failing dead unknown removed retired' -- "$cur"))
            return ;;
        --country|--group|--source|--limit|--offset|--timeout|--countries|--max-bytes|--api|--api-secret)
            return ;;
        --output)
            _filedir
            return ;;
    esac

    # Find the verb: the first word after the program that is not a flag
    # or a flag's value.
    local i verb="" sub=""
    for ((i = 1; i < cword; i++)); do
        case ${words[i]} in
            --db|--config|--api|--api-secret|--format|--state|--country|--group|--source|--limit|--offset|--timeout|--countries|--max-bytes|--output) ((i++)) ;;
            -*) ;;
            *) if [[ -z $verb ]]; then verb=${words[i]}; elif [[ -z $sub ]]; then sub=${words[i]}; fi ;;
        esac
    done

    if [[ -z $verb ]]; then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "$global" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$verbs" -- "$cur"))
        fi
        return
    fi

    case $verb in
        parse|import)
            if [[ $cur == -* ]]; then
                COMPREPLY=($(compgen -W "--json --max-bytes" -- "$cur"))
            else
                _filedir
            fi ;;
        list)
            COMPREPLY=($(compgen -W "--json --state --country --group --source --limit --offset" -- "$cur")) ;;
        check|refresh)
            COMPREPLY=($(compgen -W "--json --wait --timeout" -- "$cur")) ;;
        export)
            COMPREPLY=($(compgen -W "--format --output --json" -- "$cur")) ;;
        status)
            COMPREPLY=($(compgen -W "--json --countries" -- "$cur")) ;;
        add|remove|restore)
            COMPREPLY=($(compgen -W "--json" -- "$cur")) ;;
        tor)
            if [[ -z $sub ]]; then
                COMPREPLY=($(compgen -W "status generate newnym" -- "$cur"))
            elif [[ $sub == generate ]]; then
                COMPREPLY=($(compgen -W "--json --wait --timeout" -- "$cur"))
            else
                COMPREPLY=($(compgen -W "--json" -- "$cur"))
            fi ;;
    esac
} &&
    complete -F _proxypoolctl proxypoolctl

# ex: filetype=sh
