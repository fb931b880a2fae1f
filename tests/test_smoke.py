from scrubproxy import ProxyCache
from scrubproxy.reader import ProxyReader
from scrubproxy.samples import read_index


def test_every_proxy_frame_shows_its_source_index(cache: ProxyCache, cfr_source):
    path = cache.ensure(cfr_source)
    with ProxyReader(path) as r:
        assert len(r) == 60
        assert [read_index(r[k]) for k in range(len(r))] == list(range(60))
