"""The WebUI's launcher (fake A1111 1.10.1): prepare the environment (extension installers), then start the WebUI.

Extensions' install.py files `import launch` for is_installed / run_pip, as in A1111.
"""
from modules import launch_utils

args = launch_utils.args
python = launch_utils.python
run = launch_utils.run
is_installed = launch_utils.is_installed
run_pip = launch_utils.run_pip
list_extensions = launch_utils.list_extensions
run_extension_installer = launch_utils.run_extension_installer
prepare_environment = launch_utils.prepare_environment
start = launch_utils.start


def main():
    if not args.skip_prepare_environment:
        prepare_environment()
    start()


if __name__ == "__main__":
    main()
