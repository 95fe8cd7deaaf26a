"""The chat page at / in a real headless browser (Debian's chromium and chromedriver, which `make test`
installs when absent): a message typed and sent streams a reply equal to the API's for the same greedy
request, and a second message is answered with the conversation so far."""
import shutil
import time

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("openai")
webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test needs selenium (the dev extras)")

from test_serve import Running  # noqa: E402

from llmarch.cli.options import load_with_tokenizer  # noqa: E402

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(CHROMIUM is None or DRIVER is None, reason="no chromium or chromedriver on PATH "
                                "(`make test` installs Debian's chromium and chromium-driver where apt-get can)")


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--disable-extensions", "--no-first-run"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from conftest import byte_checkpoint

    model, tok = load_with_tokenizer(byte_checkpoint(tmp_path_factory.mktemp("chat"), context_length=128))
    running = Running(model=model, tok=tok, name="ckpt")
    yield running
    running.close()


def wait_for(condition, seconds=5.0):
    end = time.time() + seconds
    while not (value := condition()):
        assert time.time() < end, "timed out"
        time.sleep(0.02)
    return value


def test_chat_page_streams_replies_with_history(browser, server):
    browser.get(server.url + "/?temperature=0&max_tokens=12&frequency_penalty=-2")  # -2: a reward for repeats
    wait_for(lambda: browser.execute_script("return document.getElementById('model').textContent") == "ckpt")
    history = []
    for turn, message in enumerate(("hi", "and then?"), 1):
        box = browser.find_element("id", "text")
        box.send_keys(message)
        box.send_keys("\n")  # Enter sends
        history.append({"role": "user", "content": message})
        # the reply has finished streaming once the Send button is enabled again after its turn
        replies = wait_for(lambda: turn == len(browser.find_elements("css selector", "#log .assistant"))
                           and browser.find_element("id", "send").is_enabled()
                           and browser.execute_script(
                               "return [...document.querySelectorAll('#log .assistant')].map(d => d.textContent)"))
        api = server.client.chat.completions.create(model="ckpt", messages=history, max_tokens=12, temperature=0,
                                                    frequency_penalty=-2)
        assert replies[-1] and replies[-1] == api.choices[0].message.content
        plain = server.client.chat.completions.create(model="ckpt", messages=history, max_tokens=12, temperature=0)
        assert replies[-1] != plain.choices[0].message.content  # the page passed the penalty on
        history.append({"role": "assistant", "content": replies[-1]})
    users = browser.execute_script("return [...document.querySelectorAll('#log .user')].map(d => d.textContent)")
    assert users == ["hi", "and then?"]
    assert not browser.find_elements("css selector", "#log .error")
