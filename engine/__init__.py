"""saywell.engine"""
